{{/* Name of the chart, overridable. */}}
{{- define "postgresql.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: `<release>-postgresql` unless overridden. The heliox parent chart computes the same
name to reach the Service and Secret, so keep this rule simple.
*/}}
{{- define "postgresql.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "postgresql.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "postgresql.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgresql.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database
{{- end -}}

{{- define "postgresql.labels" -}}
helm.sh/chart: {{ include "postgresql.chart" . }}
{{ include "postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ regexReplaceAll "[^A-Za-z0-9._-]" (.Values.image.tag | default .Chart.AppVersion | toString) "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: heliox
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- /* commonLabels last, never over a label above (the selector's among them). */}}
{{- range $k, $v := .Values.commonLabels | default dict }}
{{- if not (has $k (list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" "app.kubernetes.io/version" "app.kubernetes.io/part-of" "app.kubernetes.io/managed-by")) }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "postgresql.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the passwords: the user's existing one or the chart's. */}}
{{- define "postgresql.secretName" -}}
{{- .Values.auth.existingSecret | default (include "postgresql.fullname" .) -}}
{{- end -}}

{{/*
The passwords of the chart's Secret, as JSON {"user": ..., "admin": ...}: from values, else read
back from the live Secret (`lookup`, so a generated password stays the same across upgrades),
else generated (32 alphanumerics). Worked out once per render and kept in the chart's root
context, so every template that asks (secret.yaml, and the heliox parent chart through
`.Subcharts.postgresql` for its migration hook) gets the same values, even where `lookup` sees no
cluster and a random one is made. Call with this chart's root context.
*/}}
{{- define "postgresql.passwords" -}}
{{- if not (hasKey . "_postgresqlPasswords") -}}
{{- $name := include "postgresql.fullname" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name | default dict -}}
{{- $data := get $existing "data" | default dict -}}
{{- $user := .Values.auth.password | default (get $data .Values.auth.secretKeys.userPasswordKey | b64dec) | default (randAlphaNum 32) -}}
{{- $admin := .Values.auth.postgresPassword | default (get $data .Values.auth.secretKeys.adminPasswordKey | b64dec) | default (randAlphaNum 32) -}}
{{- $_ := set . "_postgresqlPasswords" (dict "user" $user "admin" $admin) -}}
{{- end -}}
{{- get . "_postgresqlPasswords" | toJson -}}
{{- end -}}
