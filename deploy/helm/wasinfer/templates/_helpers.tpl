{{/* Labels that never change across upgrades (a Deployment's selector is immutable).
     Called with (dict "root" $ "component" "server"). */}}
{{- define "wasinfer.selector" -}}
app.kubernetes.io/name: wasinfer
app.kubernetes.io/instance: {{ .root.Values.instance | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The recommended app.kubernetes.io/* set. */}}
{{- define "wasinfer.labels" -}}
{{ include "wasinfer.selector" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: wasinfer
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (default: appVersion).
     Called with (dict "root" $ "image" .Values.image). */}}
{{- define "wasinfer.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}
