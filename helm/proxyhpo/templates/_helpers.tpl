{{/*
Names, labels, images, security contexts and the checks every template relies on.
*/}}

{{/* Chart name, overridable. */}}
{{- define "proxyhpo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release name alone when it already holds the chart name. */}}
{{- define "proxyhpo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's resources: "<fullname>-<component>" (call with dict "root" $ "component" "minio"). */}}
{{- define "proxyhpo.componentName" -}}
{{- printf "%s-%s" (include "proxyhpo.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "proxyhpo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "proxyhpo.labels" -}}
helm.sh/chart: {{ include "proxyhpo.chart" . }}
app.kubernetes.io/name: {{ include "proxyhpo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: proxyhpo
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (dict "root" $ "component" "mlflow"). Never change: selectors are immutable. */}}
{{- define "proxyhpo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proxyhpo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's resources and pods. */}}
{{- define "proxyhpo.componentLabels" -}}
{{ include "proxyhpo.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Fixed names the pipelines reference (see values.yaml). */}}
{{- define "proxyhpo.s3SecretName" -}}proxyhpo-s3{{- end -}}
{{/* The data set reader's keys (fixed: the compiled pipelines reference it). */}}
{{- define "proxyhpo.datasetSecretName" -}}proxyhpo-s3-datasets{{- end -}}
{{/* The data set uploader's keys: read by the demo-data Job and whoever pushes data sets, never by pipeline pods. */}}
{{- define "proxyhpo.uploaderSecretName" -}}proxyhpo-s3-datasets-upload{{- end -}}
{{/* MLflow's admin user and password (keys MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD): the server creates
the user from them, the pipelines log with them. Fixed name: the compiled pipelines reference it. */}}
{{- define "proxyhpo.mlflowSecretName" -}}proxyhpo-mlflow{{- end -}}
{{/* The MLflow server's own secret (key flask-secret-key: signs the auth app's CSRF tokens, one for every replica). */}}
{{- define "proxyhpo.mlflowServerSecretName" -}}
{{- include "proxyhpo.componentName" (dict "root" . "component" "mlflow") -}}-server
{{- end -}}
{{- define "proxyhpo.endpointsName" -}}proxyhpo-endpoints{{- end -}}
{{/* MinIO's root credentials (keys root-user, root-password): only MinIO and the bucket Job read them. */}}
{{- define "proxyhpo.minioRootSecretName" -}}
{{- default (include "proxyhpo.componentName" (dict "root" . "component" "minio")) .Values.s3.existingSecret -}}
{{- end -}}
{{- define "proxyhpo.postgresSecretName" -}}
{{- default "proxyhpo-postgres" .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{/*
The credentials the chart's Secrets hold, base64-encoded, as JSON: minioRootUser, minioRootPassword,
pipelineSecretKey, datasetSecretKey, uploaderSecretKey, postgresPassword, mlflowAdminPassword, mlflowFlaskSecretKey. Each is the value given, else the one in the Secret a previous install
created (Helm's `lookup`, so upgrades need no credentials), else empty ("proxyhpo.validate" then fails);
the pipeline user's key, MLflow's admin password and its server's signing key are generated when neither exists. Resolved once per render and memoised in
.Values, so every template (Secrets, checksums, checks) sees the same, generated key included.
Use: $c := include "proxyhpo.credentials" . | fromJson
*/}}
{{- define "proxyhpo.credentials" -}}
{{- if not (hasKey .Values "__credentials") -}}
{{- $ns := .Release.Namespace -}}
{{- $c := dict "minioRootUser" "" "minioRootPassword" "" "pipelineSecretKey" "" "postgresPassword" "" "mlflowAdminPassword" "" -}}
{{- if and .Values.minio.enabled (not .Values.s3.existingSecret) -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.minioRootSecretName" .)).data | default dict -}}
{{- $_ := set $c "minioRootUser" (ternary (b64enc .Values.s3.accessKey) (get $old "root-user" | toString) (ne .Values.s3.accessKey "")) -}}
{{- $_ := set $c "minioRootPassword" (ternary (b64enc .Values.s3.secretKey) (get $old "root-password" | toString) (ne .Values.s3.secretKey "")) -}}
{{- end -}}
{{- $user := .Values.s3.pipelineUser -}}
{{- if $user.secretKey -}}
{{- $_ := set $c "pipelineSecretKey" (b64enc $user.secretKey) -}}
{{- else -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.s3SecretName" .)).data | default dict -}}
{{- /* Only a key written for this user: a Secret of an older chart held the root credentials. */ -}}
{{- if and (get $old "AWS_SECRET_ACCESS_KEY") (eq (get $old "AWS_ACCESS_KEY_ID" | toString) (b64enc $user.name)) -}}
{{- $_ := set $c "pipelineSecretKey" (get $old "AWS_SECRET_ACCESS_KEY" | toString) -}}
{{- else if .Values.minio.enabled -}}
{{- $_ := set $c "pipelineSecretKey" (randAlphaNum 40 | b64enc) -}}
{{- end -}}
{{- end -}}
{{- $reader := .Values.s3.datasetUser -}}
{{- $_ := set $c "datasetSecretKey" "" -}}
{{- if $reader.secretKey -}}
{{- $_ := set $c "datasetSecretKey" (b64enc $reader.secretKey) -}}
{{- else -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.datasetSecretName" .)).data | default dict -}}
{{- if and (get $old "AWS_SECRET_ACCESS_KEY") (eq (get $old "AWS_ACCESS_KEY_ID" | toString) (b64enc $reader.name)) -}}
{{- $_ := set $c "datasetSecretKey" (get $old "AWS_SECRET_ACCESS_KEY" | toString) -}}
{{- else if .Values.minio.enabled -}}
{{- $_ := set $c "datasetSecretKey" (randAlphaNum 40 | b64enc) -}}
{{- end -}}
{{- end -}}
{{- $uploader := .Values.s3.datasetUploader -}}
{{- $_ := set $c "uploaderSecretKey" "" -}}
{{- if $uploader.secretKey -}}
{{- $_ := set $c "uploaderSecretKey" (b64enc $uploader.secretKey) -}}
{{- else -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.uploaderSecretName" .)).data | default dict -}}
{{- if and (get $old "AWS_SECRET_ACCESS_KEY") (eq (get $old "AWS_ACCESS_KEY_ID" | toString) (b64enc $uploader.name)) -}}
{{- $_ := set $c "uploaderSecretKey" (get $old "AWS_SECRET_ACCESS_KEY" | toString) -}}
{{- else if .Values.minio.enabled -}}
{{- $_ := set $c "uploaderSecretKey" (randAlphaNum 40 | b64enc) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.postgresql.auth.existingSecret -}}
{{- $pw := .Values.postgresql.auth.password -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.postgresSecretName" .)).data | default dict -}}
{{- $_ := set $c "postgresPassword" (ternary (b64enc $pw) (get $old "POSTGRES_PASSWORD" | toString) (ne $pw "")) -}}
{{- end -}}
{{- $auth := .Values.mlflow.auth -}}
{{- if $auth.enabled -}}
{{- $old := (lookup "v1" "Secret" $ns (include "proxyhpo.mlflowSecretName" .)).data | default dict -}}
{{- if $auth.adminPassword -}}
{{- $_ := set $c "mlflowAdminPassword" (b64enc $auth.adminPassword) -}}
{{- else if get $old "MLFLOW_TRACKING_PASSWORD" -}}
{{- $_ := set $c "mlflowAdminPassword" (get $old "MLFLOW_TRACKING_PASSWORD" | toString) -}}
{{- else -}}
{{- $_ := set $c "mlflowAdminPassword" (randAlphaNum 40 | b64enc) -}}
{{- end -}}
{{- $server := (lookup "v1" "Secret" $ns (include "proxyhpo.mlflowServerSecretName" .)).data | default dict -}}
{{- $_ := set $c "mlflowFlaskSecretKey" (get $server "flask-secret-key" | default (randAlphaNum 48 | b64enc) | toString) -}}
{{- end -}}
{{- $_ := set .Values "__credentials" $c -}}
{{- end -}}
{{- get .Values "__credentials" | toJson -}}
{{- end -}}

{{/* Tag of proxyhpo's own images: image.tag, else the package version (appVersion). */}}
{{- define "proxyhpo.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}
{{- define "proxyhpo.runtimeImage" -}}
{{- printf "%s/runtime:%s" (trimSuffix "/" .Values.image.registry) (include "proxyhpo.imageTag" .) -}}
{{- end -}}
{{- define "proxyhpo.cpuImage" -}}
{{- printf "%s/runtime-cpu:%s" (trimSuffix "/" .Values.image.registry) (include "proxyhpo.imageTag" .) -}}
{{- end -}}
{{- define "proxyhpo.mlflowImage" -}}
{{- $repo := default (printf "%s/mlflow" (trimSuffix "/" .Values.image.registry)) .Values.mlflow.image.repository -}}
{{- printf "%s:%s" $repo (default (include "proxyhpo.imageTag" .) .Values.mlflow.image.tag) -}}
{{- end -}}

{{/* Service names and in-cluster addresses. */}}
{{- define "proxyhpo.minioHost" -}}
{{- printf "%s.%s.svc.%s" (include "proxyhpo.componentName" (dict "root" . "component" "minio")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{/* The S3 endpoint every pod uses: the chart's MinIO, or s3.endpoint when minio.enabled is false. */}}
{{- define "proxyhpo.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s:%d" (include "proxyhpo.minioHost" .) (int .Values.minio.service.port) -}}
{{- else -}}
{{- trimSuffix "/" .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}
{{/* MLflow's database, without a password (libpq reads PGPASSWORD): its runs' store and its auth app's users. */}}
{{- define "proxyhpo.mlflowDatabaseUri" -}}
{{- printf "postgresql+psycopg2://%s@%s:%d/%s" .Values.postgresql.auth.username (include "proxyhpo.postgresHost" .) (int .Values.postgresql.service.port) .Values.postgresql.auth.database -}}
{{- end -}}
{{- define "proxyhpo.mlflowHost" -}}
{{- printf "%s.%s.svc.%s" (include "proxyhpo.componentName" (dict "root" . "component" "mlflow")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- define "proxyhpo.mlflowTrackingUri" -}}
{{- printf "http://%s:%d" (include "proxyhpo.mlflowHost" .) (int .Values.mlflow.service.port) -}}
{{- end -}}
{{- define "proxyhpo.postgresHost" -}}
{{- printf "%s.%s.svc.%s" (include "proxyhpo.componentName" (dict "root" . "component" "postgresql")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
Host headers MLflow accepts (MLFLOW_SERVER_ALLOWED_HOSTS): every name of its service, with and without a
port, localhost for port-forwarding, and mlflow.allowedHosts. MLflow 3 answers 403 to any other Host.
*/}}
{{- define "proxyhpo.mlflowAllowedHosts" -}}
{{- $svc := include "proxyhpo.componentName" (dict "root" . "component" "mlflow") -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (include "proxyhpo.mlflowHost" .) -}}
{{- $all := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" -}}
{{- range $hosts -}}
{{- $all = append (append $all .) (printf "%s:*" .) -}}
{{- end -}}
{{- concat $all .Values.mlflow.allowedHosts | uniq | join "," -}}
{{- end -}}

{{/* Pod security context of a component run as uid/gid .uid (dict "root" $ "uid" 10001). */}}
{{- define "proxyhpo.podSecurityContext" -}}
{{- $ctx := deepCopy .root.Values.podSecurityContext -}}
{{- $_ := set $ctx "runAsUser" (int .uid) -}}
{{- $_ := set $ctx "runAsGroup" (int .uid) -}}
{{- $_ := set $ctx "fsGroup" (int .uid) -}}
{{- toYaml $ctx -}}
{{- end -}}

{{- define "proxyhpo.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/*
Checks of combinations the schema cannot express. Called from every template, so `helm template` and
`helm install` fail with one of these messages before anything is created.
*/}}
{{- define "proxyhpo.validate" -}}
{{- if eq .Values.s3.datasetUser.name .Values.s3.pipelineUser.name -}}
{{- fail "s3.datasetUser.name must differ from s3.pipelineUser.name: the data set reader is a user of its own" -}}
{{- end -}}
{{- if and .Values.s3.datasetUser.secretKey (lt (len .Values.s3.datasetUser.secretKey) 8) -}}
{{- fail "s3.datasetUser.secretKey must have at least 8 characters (or be empty: generated)" -}}
{{- end -}}
{{- if has .Values.s3.datasetUploader.name (list .Values.s3.pipelineUser.name .Values.s3.datasetUser.name) -}}
{{- fail "s3.datasetUploader.name must differ from s3.pipelineUser.name and s3.datasetUser.name: the data set uploader is a user of its own" -}}
{{- end -}}
{{- if and .Values.s3.datasetUploader.secretKey (lt (len .Values.s3.datasetUploader.secretKey) 8) -}}
{{- fail "s3.datasetUploader.secretKey must have at least 8 characters (or be empty: generated)" -}}
{{- end -}}
{{- $data := .Values.s3.datasetUser.prefix -}}
{{- range $used := list "checkpoints" .Values.kfpLauncher.pipelineRootPrefix .Values.mlflow.artifactsPrefix -}}
{{- if or (eq $data $used) (hasPrefix (printf "%s/" $used) $data) (hasPrefix (printf "%s/" $data) $used) -}}
{{- fail (printf "s3.datasetUser.prefix %q overlaps s3://<bucket>/%s, where the runs write and delete (the pipeline user may delete nothing under the prefix): give the data sets a folder of their own, e.g. datasets" $data $used) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.caBundle.configMap .Values.caBundle.secret -}}
{{- fail "caBundle: give caBundle.configMap or caBundle.secret, not both (the one that holds the CA bundle)" -}}
{{- end -}}
{{- $c := include "proxyhpo.credentials" . | fromJson -}}
{{- $ns := .Release.Namespace -}}
{{- $s3 := .Values.s3 -}}
{{- if not .Values.minio.enabled -}}
{{- if not $s3.endpoint -}}
{{- fail "minio.enabled is false: set s3.endpoint to the S3 service to use instead (http(s)://host[:port], e.g. http://seaweedfs.kubeflow:8333)" -}}
{{- end -}}
{{- if not $c.pipelineSecretKey -}}
{{- fail (printf "minio.enabled is false: give the keys of a user of %s confined to bucket %s, --set s3.pipelineUser.name=... --set s3.pipelineUser.secretKey=... (the chart cannot create that user there; an upgrade reuses Secret %s, and none was found in namespace %s)" $s3.endpoint $s3.bucket (include "proxyhpo.s3SecretName" .) $ns) -}}
{{- end -}}
{{- else if $s3.existingSecret -}}
{{- if or $s3.accessKey $s3.secretKey -}}
{{- fail "s3: give either s3.existingSecret or s3.accessKey/s3.secretKey, not both" -}}
{{- end -}}
{{- if eq $s3.existingSecret (include "proxyhpo.s3SecretName" .) -}}
{{- fail (printf "s3.existingSecret must name a Secret with MinIO's root credentials (keys root-user, root-password), not %s: the chart writes that one with the keys of the bucket-scoped pipeline user" (include "proxyhpo.s3SecretName" .)) -}}
{{- end -}}
{{- else -}}
{{- if and (or $s3.accessKey $s3.secretKey) (not (and $s3.accessKey $s3.secretKey)) -}}
{{- fail "s3 credentials missing: give s3.accessKey and s3.secretKey together (both or neither; neither keeps the stored ones on an upgrade)" -}}
{{- end -}}
{{- if or (not $c.minioRootUser) (not $c.minioRootPassword) -}}
{{- fail (printf "s3 credentials missing: set s3.existingSecret to a Secret with keys root-user and root-password, or pass --set s3.accessKey=... --set s3.secretKey=... (no default credentials are shipped; an upgrade reuses Secret %s, and none was found in namespace %s)" (include "proxyhpo.minioRootSecretName" .) $ns) -}}
{{- end -}}
{{- if and $s3.accessKey (lt (len $s3.accessKey) 3) -}}
{{- fail "s3.accessKey must have at least 3 characters (MinIO refuses shorter root users)" -}}
{{- end -}}
{{- if and $s3.secretKey (lt (len $s3.secretKey) 8) -}}
{{- fail "s3.secretKey must have at least 8 characters (MinIO refuses shorter root passwords)" -}}
{{- end -}}
{{- if eq (b64enc $s3.pipelineUser.name) $c.minioRootUser -}}
{{- fail "s3.pipelineUser.name must differ from the MinIO root user (s3.accessKey): the pipelines never get the root credentials" -}}
{{- end -}}
{{- end -}}
{{- if and $s3.pipelineUser.secretKey (lt (len $s3.pipelineUser.secretKey) 8) -}}
{{- fail "s3.pipelineUser.secretKey must have at least 8 characters (MinIO refuses shorter secret keys); leave it empty to have one generated" -}}
{{- end -}}
{{- $pg := .Values.postgresql.auth -}}
{{- if $pg.existingSecret -}}
{{- if $pg.password -}}
{{- fail "postgresql: give either postgresql.auth.existingSecret or postgresql.auth.password, not both" -}}
{{- end -}}
{{- else if not $c.postgresPassword -}}
{{- fail (printf "postgresql password missing: set postgresql.auth.existingSecret to a Secret with key POSTGRES_PASSWORD, or pass --set postgresql.auth.password=... (no default password is shipped; an upgrade reuses Secret %s, and none was found in namespace %s)" (include "proxyhpo.postgresSecretName" .) $ns) -}}
{{- end -}}
{{- if and .Values.minio.persistence.existingClaim (not .Values.minio.persistence.enabled) -}}
{{- fail "minio.persistence.existingClaim is set but minio.persistence.enabled is false: enable persistence or drop the claim" -}}
{{- end -}}
{{- end -}}

{{/*
Checksum of the credentials one pod reads (dict "root" $ "keys" (list "postgresPassword")), for a pod
annotation: the pod restarts when they change. With an existingSecret the chart cannot see a change:
restart yourself (kubectl rollout restart).
*/}}
{{- define "proxyhpo.credentialsChecksum" -}}
{{- $c := include "proxyhpo.credentials" .root | fromJson -}}
{{- $parts := list -}}
{{- range .keys -}}
{{- $parts = append $parts (get $c . | toString) -}}
{{- end -}}
{{- join "," $parts | sha256sum -}}
{{- end -}}

{{/* Pod annotations of run-to-completion pods (hook Job, test Pod): an Istio sidecar would never exit. */}}
{{- define "proxyhpo.noSidecar" -}}
sidecar.istio.io/inject: "false"
{{- end -}}

{{/* Pod annotations of the services (MinIO, PostgreSQL, MLflow): no sidecar unless istio.injectSidecar. */}}
{{- define "proxyhpo.serviceMesh" -}}
{{- if not .Values.istio.injectSidecar -}}
{{ include "proxyhpo.noSidecar" . }}
{{- end -}}
{{- end -}}

{{/*
A private CA bundle (caBundle), only when one is set: the variables that point boto3, requests and Python's ssl
module at it, its mount and its volume. The pipelines' tasks get the same (pipelines/tasks.py, CA_BUNDLE_ENV).
*/}}
{{- define "proxyhpo.caBundleEnv" -}}
{{- with .Values.caBundle -}}
{{- if or .configMap .secret }}
{{- range list "AWS_CA_BUNDLE" "REQUESTS_CA_BUNDLE" "SSL_CERT_FILE" }}
- name: {{ . }}
  value: /etc/proxyhpo/ca/{{ $.Values.caBundle.key }}
{{- end }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "proxyhpo.caBundleMount" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: ca-bundle
  mountPath: /etc/proxyhpo/ca
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "proxyhpo.caBundleVolume" -}}
{{- with .Values.caBundle -}}
{{- if .configMap }}
- name: ca-bundle
  configMap:
    name: {{ .configMap }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- else if .secret }}
- name: ca-bundle
  secret:
    secretName: {{ .secret }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end -}}
{{- end -}}
{{- end -}}
