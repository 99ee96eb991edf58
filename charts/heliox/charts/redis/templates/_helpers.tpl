{{/* Name of the chart, overridable. */}}
{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: `<release>-redis` unless overridden. The heliox parent chart computes the same
name to reach the Service and Secret, so keep this rule simple.
*/}}
{{- define "redis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "redis.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "redis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cache
{{- end -}}

{{- define "redis.labels" -}}
helm.sh/chart: {{ include "redis.chart" . }}
{{ include "redis.selectorLabels" . }}
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

{{- define "redis.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the password: the user's existing one or the chart's. */}}
{{- define "redis.secretName" -}}
{{- .Values.auth.existingSecret | default (include "redis.fullname" .) -}}
{{- end -}}

{{/*
Checksum of where the password comes from: the Secret's name and key, and the password when
values give it. Redis reads the password only when it starts (it writes `requirepass` then), so
the StatefulSet's pod template carries this and a changed password rolls the pod. A generated
password is not part of it: it never changes (read back with `lookup` on every upgrade), and
leaving it out keeps `helm template` output the same from one render to the next. A rotated
`auth.existingSecret` is not seen either (the chart cannot read it when it renders): restart the
pod yourself, as for the API pods. A hash reveals nothing.
*/}}
{{- define "redis.secretChecksum" -}}
{{- $in := dict "secret" (include "redis.secretName" .) "key" .Values.auth.existingSecretPasswordKey -}}
{{- if not .Values.auth.existingSecret -}}
{{- $_ := set $in "password" (.Values.auth.password | default "") -}}
{{- end -}}
{{- toJson $in | sha256sum -}}
{{- end -}}
