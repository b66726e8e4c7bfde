{{/* Name of the chart, or nameOverride. */}}
{{- define "rds-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless it is in it. */}}
{{- define "rds-csi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rds-csi.labels" -}}
app.kubernetes.io/name: {{ include "rds-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "rds-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rds-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rds-csi.controllerServiceAccount" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (printf "%s-controller" (include "rds-csi.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rds-csi.nodeServiceAccount" -}}
{{- if .Values.node.serviceAccount.create -}}
{{- default (printf "%s-node" (include "rds-csi.fullname" .)) .Values.node.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.node.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rds-csi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret with the SSH key and the RDS host key. */}}
{{- define "rds-csi.secretName" -}}
{{- if .Values.rds.existingSecret -}}
{{- .Values.rds.existingSecret -}}
{{- else if .Values.rds.secret.create -}}
{{- printf "%s-rds" (include "rds-csi.fullname" .) -}}
{{- else -}}
{{- fail "rds.existingSecret (a Secret with keys ssh-privatekey and host-key) or rds.secret.create with rds.secret.sshPrivateKey and rds.secret.hostKey is required: the SSH key and the RDS host key are never plain values" -}}
{{- end -}}
{{- end -}}

{{/* The node plugin's CSI socket directory and socket, as the kubelet sees them. */}}
{{- define "rds-csi.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.node.kubeletDir) .Values.driverName -}}
{{- end -}}

{{/* Flags shared by every controller sidecar: socket, leader election, retries, timeout. */}}
{{- define "rds-csi.sidecarArgs" -}}
- --csi-address=/csi/csi.sock
- --v={{ .Values.logLevel }}
- --leader-election=true
- --leader-election-namespace={{ .Release.Namespace }}
- --leader-election-lease-duration={{ .Values.sidecars.leaderElection.leaseDuration }}
- --leader-election-renew-deadline={{ .Values.sidecars.leaderElection.renewDeadline }}
- --leader-election-retry-period={{ .Values.sidecars.leaderElection.retryPeriod }}
- --retry-interval-start={{ .Values.sidecars.retryIntervalStart }}
- --retry-interval-max={{ .Values.sidecars.retryIntervalMax }}
{{- end -}}

{{- define "rds-csi.sidecarSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
