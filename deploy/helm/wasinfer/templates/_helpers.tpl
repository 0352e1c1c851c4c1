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

{{/* What the cluster serves (.Capabilities.KubeVersion: the server's with `helm install`, --kube-version with
     `helm template`), the same choices as `wasinfer deploy render --kube-version`. The version, not
     .Capabilities.APIVersions: `helm template` lists every API version its client knows, whatever --kube-version. */}}
{{- define "wasinfer.hpaApiVersion" -}}
{{- if semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end }}

{{- define "wasinfer.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end }}

{{/* "true" where the preStop sleep action is on by default (1.30); elsewhere the server drains itself
     (--drain-delay-s), which needs no shell in the image. */}}
{{- define "wasinfer.sleepAction" -}}
{{- if semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version -}}
true
{{- end -}}
{{- end }}
