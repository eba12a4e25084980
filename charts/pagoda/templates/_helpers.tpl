{{/* Name of the chart, overridable by nothing: the chart installs one operator per release. */}}
{{- define "pagoda.name" -}}
pagoda
{{- end }}

{{/* Full name: <release>-pagoda-operator, or the release name when it already says pagoda. */}}
{{- define "pagoda.fullname" -}}
{{- if contains "pagoda" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pagoda-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "pagoda.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: pagoda
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "pagoda.selectorLabels" -}}
app.kubernetes.io/name: pagoda-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pagoda.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pagoda.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{- define "pagoda.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}
