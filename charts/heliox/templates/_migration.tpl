{{/* The migration Job's pieces (migration-job.yaml renders them). */}}

{{/* Whether the migration Job renders as a pre-upgrade hook ("true") or a plain Job (""). */}}
{{- define "heliox.migrations.hook" -}}
{{- if and .Values.migrations.useHelmHooks .Release.IsUpgrade -}}true{{- end -}}
{{- end -}}

{{/* Name of the hook Job and of the hook objects made for it (a hook copy of each kind). */}}
{{- define "heliox.migrations.hookName" -}}
{{- printf "%s-migrate" (include "heliox.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/*
Data of the hook's Secret copy: the chart Secret's URLs, plus DATABASE_PASSWORD when it is the
password the postgresql subchart generated. That one lives in the subchart's Secret, which a
pre-upgrade hook would read as it was before the upgrade (or not at all, when this upgrade
renames its key); the subchart works it out once per render ("postgresql.passwords": values,
else the live Secret through `lookup`, else random) and hands the same value to both Secrets.
Passwords in a user's Secret are read from it: the user makes it before the upgrade.
*/}}
{{- define "heliox.migrations.secretData" -}}
{{- $data := include "heliox.secretData" . | fromJson -}}
{{- $db := include "heliox.db" . | fromJson -}}
{{- if $db.generated -}}
{{- $passwords := include "postgresql.passwords" .Subcharts.postgresql | fromJson -}}
{{- $_ := set $data "DATABASE_PASSWORD" $passwords.user -}}
{{- end -}}
{{- toJson $data -}}
{{- end -}}

{{/*
Whether the hook also needs its own ServiceAccount ("true"): the chart creates the API's one, yet
it is not in the cluster when the hook runs (this upgrade turns `serviceAccount.create` on, or
renames it; the release's objects are only made after the hooks), and a pod naming a missing
ServiceAccount is refused. The copy has the same name, so the migration keeps the identity that
cloud IAM bindings (IRSA, Workload Identity) trust; it is deleted right after the hooks, before
Helm creates the release's own. Where it exists already, the hook uses it as it is.
*/}}
{{- define "heliox.migrations.hookServiceAccount" -}}
{{- if and .Values.serviceAccount.create (not .Values.migrations.serviceAccountName) -}}
{{- if not (lookup "v1" "ServiceAccount" .Release.Namespace (include "heliox.serviceAccountName" .)) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The migration Job's spec without `ttlSecondsAfterFinished` (which may change on a live Job).
Call with (dict "ctx" $ "refs" <name of the ConfigMap and Secret to read> "hook" "true"|"").
A plain Job is named after a hash of this rendering: whatever reaches the pod template (image,
command, configuration and secret checksums, labels, scheduling, security contexts, pull
secrets, volumes, ...) makes a new Job instead of an edit of a Job's immutable pod template.
The Job's name is not in it.
*/}}
{{- define "heliox.migrations.jobSpec" -}}
{{- $ := .ctx -}}
{{- $m := $.Values.migrations -}}
backoffLimit: {{ $m.backoffLimit }}
activeDeadlineSeconds: {{ $m.activeDeadlineSeconds }}
template:
  metadata:
    labels:
      {{- include "heliox.podLabels" (dict "ctx" $ "component" "migrations" "extra" $m.podLabels) | nindent 6 }}
    annotations:
      checksum/config: {{ include "heliox.configData" $ | sha256sum }}
      {{- /* The database wiring only: the Job reads no Redis setting. */}}
      checksum/secret: {{ include "heliox.db" $ | sha256sum }}
      {{- with $m.podAnnotations }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ $m.serviceAccountName | default (include "heliox.serviceAccountName" $) }}
    {{- include "heliox.podCommon" $ | nindent 4 }}
    {{- with $.Values.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    {{- with $.Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $.Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: migrate
        image: {{ include "heliox.image" $ }}
        imagePullPolicy: {{ $.Values.image.pullPolicy }}
        # args, not command: the image's entrypoint (tini) stays PID 1 and forwards signals.
        args:
          {{- toYaml $m.command | nindent 10 }}
        envFrom:
          {{- include "heliox.envFrom" (dict "ctx" $ "configMap" .refs) | nindent 10 }}
        {{- $more := concat (list (dict "name" "MIGRATE_DB_WAIT_TIMEOUT" "value" (int $m.dbWaitTimeoutSeconds | toString))) ($m.extraEnv | default list) }}
        {{- with include "heliox.env" (dict "ctx" $ "secretName" .refs "redis" false "hook" (eq .hook "true") "more" $more) }}
        env:
          {{- . | nindent 10 }}
        {{- end }}
        resources:
          {{- toYaml $m.resources | nindent 10 }}
        securityContext:
          {{- toYaml $.Values.containerSecurityContext | nindent 10 }}
        volumeMounts:
          {{- include "heliox.scratchMounts" $ | nindent 10 }}
    volumes:
      {{- include "heliox.scratchVolumes" $ | nindent 6 }}
{{- end -}}
