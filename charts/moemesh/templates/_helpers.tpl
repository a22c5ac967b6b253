{{/* The chart name, or nameOverride. */}}
{{- define "moemesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: the release name, with the chart name unless it contains it. */}}
{{- define "moemesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "moemesh.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The standard labels of the chart's own objects. */}}
{{- define "moemesh.labels" -}}
app.kubernetes.io/name: {{ include "moemesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "moemesh.commonLabels" . }}
{{- end -}}

{{/* The labels besides name, instance and component (pod templates add them to their selector labels). */}}
{{- define "moemesh.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: moemesh
{{- end -}}

{{/* Selector labels of one component of the release ("operator", "redis"): pass (list . "component"). */}}
{{- define "moemesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moemesh.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Pods the operator creates for MoeDeployments (labels set by operator/Desired/Names.cs): pass the component. */}}
{{- define "moemesh.servingSelector" -}}
app.kubernetes.io/name: moemesh
app.kubernetes.io/managed-by: moemesh-operator
app.kubernetes.io/component: {{ . }}
{{- end -}}

{{- define "moemesh.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "moemesh.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moemesh.redis.secretName" -}}
{{- default (printf "%s-redis" (include "moemesh.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/* The pod and container security settings of the chart's pods: non-root, no privilege escalation, no capabilities. */}}
{{- define "moemesh.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "moemesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Egress to the Kubernetes API server (networkPolicy.apiServer). */}}
{{- define "moemesh.apiServerEgress" -}}
- to:
    {{- range .Values.networkPolicy.apiServer.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}

{{/* Egress to the cluster DNS. */}}
{{- define "moemesh.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}
