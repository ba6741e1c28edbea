# Cluster targets: images, push, deploy, chart-lint. Included by the Makefile, which defines VENV, PY and
# VERSION (the package version from pyproject.toml).
#
#   make images  [IMAGE_REGISTRY=registry.example.org/team]    build the GPU runtime, the CPU runtime and MLflow's image
#   make push                                                  push them; their digests go to build/images/<tag>/
#   make deploy  KFP_HOST=https://kubeflow.example.org/pipeline [NAMESPACE=kubeflow] [HELM_VALUES=my-values.yaml]
#                S3_ACCESS_KEY=... S3_SECRET_KEY=... POSTGRES_PASSWORD=...   (or existing Secrets in the namespace)
#                KFP_TOKEN=... or KFP_COOKIES=...                            (when KFP asks for a login)
#                [S3_ENDPOINT=https://s3.example.org]   an external S3 instead of the chart's MinIO (minio.enabled=false);
#                                          S3_ACCESS_KEY/S3_SECRET_KEY are then its user's keys for the bucket
#                [S3_BUCKET=imaging-studies] the bucket (s3.bucket): the pipelines' data root s3://<bucket>/datasets
#                [DATA_ROOT=s3://<bucket>/<folder>]  another data root in the bucket
#   make deploy  DRY_RUN=1 KFP_HOST=...   no cluster, engine or registry: prints every step, writes build/deploy/
#                [KFP_TARGET=2.5]          the KFP backend compiled for (default auto: the version the backend reports;
#                                          a dry run contacts nothing, so there the newest unless given)
#   make chart-lint                                            helm lint + render with Helm's Go engine, no cluster
#
# Images are tagged <version>-<short commit>[-dirty] (IMAGE_TAG), never with the bare, mutable version, and the
# deployed pipelines reference them by the digest `make push` recorded. Secrets are only read from the
# environment (export them; never put them on make's command line, which `ps` shows).

VENV ?= .venv
PY ?= $(VENV)/bin/python
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# The commit, read once and only when an image name is needed: "-dirty" when the tree has changes.
GIT_REVISION = $(eval GIT_REVISION := $(shell git rev-parse --short HEAD 2>/dev/null))$(GIT_REVISION)
GIT_DIRTY = $(eval GIT_DIRTY := $(if $(shell git status --porcelain 2>/dev/null | head -n 1),-dirty))$(GIT_DIRTY)
IMAGE_TAG ?= $(VERSION)$(if $(GIT_REVISION),-$(GIT_REVISION)$(GIT_DIRTY))
IMAGE_REGISTRY ?= ghcr.io/proxyhpo
RUNTIME_IMAGE = $(IMAGE_REGISTRY)/runtime:$(IMAGE_TAG)
CPU_IMAGE = $(IMAGE_REGISTRY)/runtime-cpu:$(IMAGE_TAG)
MLFLOW_IMAGE = $(IMAGE_REGISTRY)/mlflow:$(IMAGE_TAG)
# Every node pool this targets is x86-64: build for it explicitly, also on an arm64 laptop.
PLATFORM ?= linux/amd64
# docker or podman, whichever is present (DOCKER=... overrides).
DOCKER ?= $(or $(firstword $(foreach engine,docker podman,$(if $(shell command -v $(engine) 2>/dev/null),$(engine)))),docker)
# CUDA flavour of the GPU image's torch wheel (the wheel brings its CUDA libraries; the node's driver must support it).
TORCH_CUDA ?= cu129
DIGESTS = build/images/$(IMAGE_TAG)
HELM ?= helm
CHART := helm/proxyhpo
RELEASE ?= proxyhpo
# The runs' namespace, where the chart serves its Secret, ConfigMap and NetworkPolicy: standalone KFP's is
# kubeflow, multi-user Kubeflow's is the profile namespace.
NAMESPACE ?= kubeflow
CREATE_NAMESPACE ?=
HELM_VALUES ?=
KFP_HOST ?=
DRY_RUN ?=
KFP_TARGET ?= auto
S3_ENDPOINT ?=
S3_BUCKET ?=
DATA_ROOT ?=
DEPLOY_OUT ?= build/deploy
DRY := $(filter 1 yes true,$(DRY_RUN))

.PHONY: images push deploy chart-lint print-images

print-images:  ## print the image names this commit builds
	@echo $(RUNTIME_IMAGE)
	@echo $(CPU_IMAGE)
	@echo $(MLFLOW_IMAGE)

images:  ## build the GPU runtime, CPU runtime and MLflow images for linux/amd64, tagged <version>-<commit>
	@test -n "$(VERSION)" || { echo "make images: VERSION is empty; fix: run make from the repository root" >&2; exit 2; }
	@command -v $(DOCKER) >/dev/null || { echo "make images: $(DOCKER) not found; fix: install docker or podman, or set DOCKER=" >&2; exit 2; }
	$(DOCKER) build --platform $(PLATFORM) --file images/runtime/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(or $(GIT_REVISION),unknown) --build-arg TORCH_CUDA=$(TORCH_CUDA) --tag $(RUNTIME_IMAGE) .
	$(DOCKER) build --platform $(PLATFORM) --file images/runtime-cpu/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(or $(GIT_REVISION),unknown) --tag $(CPU_IMAGE) .
	$(DOCKER) build --platform $(PLATFORM) --file images/mlflow/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(or $(GIT_REVISION),unknown) --tag $(MLFLOW_IMAGE) images/mlflow

# Push one image and record its digest as <repository>@sha256:... in $(DIGESTS)/<name>.digest
# ($(1) image, $(2) repository, $(3) name). podman writes the digest itself; docker reports it after the push.
define push_image
$(if $(filter podman,$(notdir $(DOCKER))),$(DOCKER) push --digestfile $(DIGESTS)/$(3).sha $(1) \
	&& echo "$(2)@$$(cat $(DIGESTS)/$(3).sha)" > $(DIGESTS)/$(3).digest && rm -f $(DIGESTS)/$(3).sha,$(DOCKER) push $(1) \
	&& $(DOCKER) image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' $(1) \
		| grep -F '$(patsubst docker.io/%,%,$(2))@sha256:' | tail -n 1 | sed 's|.*@|$(2)@|' > $(DIGESTS)/$(3).digest)
@grep -qE '@sha256:[0-9a-f]{64}$$' $(DIGESTS)/$(3).digest || { echo "make push: no digest of $(1) after the push; fix: check the push above" >&2; exit 1; }
endef

push: images  ## push the three images; their digests go to build/images/<tag>/ for the deploy
	@mkdir -p $(DIGESTS)
	$(call push_image,$(RUNTIME_IMAGE),$(IMAGE_REGISTRY)/runtime,runtime)
	$(call push_image,$(CPU_IMAGE),$(IMAGE_REGISTRY)/runtime-cpu,runtime-cpu)
	$(call push_image,$(MLFLOW_IMAGE),$(IMAGE_REGISTRY)/mlflow,mlflow)

DEPLOY_ARGS = --host '$(KFP_HOST)' --namespace $(NAMESPACE) --release $(RELEASE) --chart $(CHART) --registry $(IMAGE_REGISTRY) \
	--tag $(IMAGE_TAG) --out $(DEPLOY_OUT) --helm $(HELM) --engine $(DOCKER) $(if $(HELM_VALUES),--values $(HELM_VALUES)) \
	--kfp-target $(KFP_TARGET) $(if $(S3_ENDPOINT),--s3-endpoint '$(S3_ENDPOINT)') $(if $(S3_BUCKET),--s3-bucket '$(S3_BUCKET)') \
	$(if $(DATA_ROOT),--data-root '$(DATA_ROOT)') \
	$(if $(filter 1 yes true,$(CREATE_NAMESPACE)),--create-namespace) $(if $(DRY),--dry-run)

# Preflight before any build; then the images; then `proxyhpo deploy` installs the chart (credentials reach helm
# as JSON on stdin, never in a file, an argument or make's echo), uploads every pipeline compiled for the pushed
# digests, creates the experiments and prints the URLs. Safe to rerun. DRY_RUN=1 contacts nothing.
deploy: install  ## preflight, images, chart (MinIO, MLflow + PostgreSQL, secrets, RBAC), pipelines, experiments, URLs
	@test -n "$(KFP_HOST)" || { echo "make deploy: KFP_HOST is not set; fix: make deploy KFP_HOST=https://<kubeflow host>/pipeline (standalone KFP: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80, then KFP_HOST=http://localhost:8080)" >&2; exit 2; }
	$(VENV)/bin/proxyhpo deploy --preflight $(DEPLOY_ARGS)
ifneq ($(DRY),)
	@echo "==> build and push the images ($(DOCKER), $(PLATFORM)); digests to $(DIGESTS)/"
	@$(MAKE) --no-print-directory -s -n push IMAGE_TAG=$(IMAGE_TAG) DOCKER=$(DOCKER) | sed -e ':a' -e '/\\$$/{N;s/\\\n[[:space:]]*/ /;ba' -e '}' -e 's/^/    would run: /'
	$(VENV)/bin/proxyhpo deploy $(DEPLOY_ARGS)
else
	$(MAKE) --no-print-directory push IMAGE_TAG=$(IMAGE_TAG) DOCKER=$(DOCKER)
	$(VENV)/bin/proxyhpo deploy $(DEPLOY_ARGS) --digests $(DIGESTS)
endif

chart-lint: install  ## lint and render the chart with Helm's engine, validate it for Kubernetes
	$(PY) -m pytest -q tests/chart
