# Cluster targets: images, push, deploy, chart-lint. Included by the Makefile, which defines VENV, PY and
# VERSION (the package version from pyproject.toml). Every image is tagged with VERSION (STYLE 11).
#
#   make images  [IMAGE_REGISTRY=registry.example.org/team]    docker build the runtime and MLflow images
#   make push                                                  docker push both
#   make deploy  KFP_HOST=https://kubeflow.example.org/pipeline [NAMESPACE=ml] [HELM_VALUES=my-values.yaml]
#                S3_ACCESS_KEY=... S3_SECRET_KEY=... POSTGRES_PASSWORD=...   (or existing Secrets in HELM_VALUES)
#   make chart-lint                                            helm lint + render with Helm's Go engine, no cluster

VENV ?= .venv
PY ?= $(VENV)/bin/python
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DOCKER ?= docker
HELM ?= helm
IMAGE_REGISTRY ?= ghcr.io/proxyhpo
RUNTIME_IMAGE := $(IMAGE_REGISTRY)/runtime:$(VERSION)
MLFLOW_IMAGE := $(IMAGE_REGISTRY)/mlflow:$(VERSION)
# CUDA flavour of the torch wheel; must match the runtime image's CUDA base (12.9).
TORCH_CUDA ?= cu129
CHART := helm/proxyhpo
RELEASE ?= proxyhpo
NAMESPACE ?= proxyhpo
HELM_VALUES ?=
KFP_HOST ?=

.PHONY: images push deploy chart-lint print-images

print-images:  ## print the image names this version builds
	@echo $(RUNTIME_IMAGE)
	@echo $(MLFLOW_IMAGE)

images:  ## build the runtime and MLflow images, tagged with the package version
	@test -n "$(VERSION)" || { echo "VERSION is empty: run make from the repository root" >&2; exit 2; }
	$(DOCKER) build --file images/runtime/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg TORCH_CUDA=$(TORCH_CUDA) --tag $(RUNTIME_IMAGE) .
	$(DOCKER) build --file images/mlflow/Dockerfile --build-arg VERSION=$(VERSION) \
		--tag $(MLFLOW_IMAGE) images/mlflow

push: images  ## push both images to IMAGE_REGISTRY
	$(DOCKER) push $(RUNTIME_IMAGE)
	$(DOCKER) push $(MLFLOW_IMAGE)

# Credentials reach helm as JSON on stdin, built from the environment: never in a file, a process's
# arguments or make's echo, and any character (a comma breaks --set) is safe.
deploy: push  ## install the chart (MinIO, MLflow + PostgreSQL, secrets, RBAC) and upload every pipeline
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST to the Kubeflow Pipelines URL" >&2; exit 2; }
	$(PY) -c "$$DEPLOY_CREDENTIALS_JSON" | $(HELM) upgrade --install $(RELEASE) $(CHART) \
		--namespace $(NAMESPACE) --create-namespace \
		--set image.registry=$(IMAGE_REGISTRY) --set image.tag=$(VERSION) \
		$(if $(HELM_VALUES),--values $(HELM_VALUES)) --values - \
		--wait --timeout 10m
	PROXYHPO_IMAGE_REGISTRY=$(IMAGE_REGISTRY) $(VENV)/bin/proxyhpo upload --host $(KFP_HOST) --namespace $(NAMESPACE)

# Prints chart values holding the credentials found in the environment (none: an empty object, and the
# chart's fail guard names what is missing unless HELM_VALUES points at existing Secrets).
define DEPLOY_CREDENTIALS_JSON
import json, os
env = os.environ.get
values = {}
if env("S3_ACCESS_KEY") or env("S3_SECRET_KEY"):
    values["s3"] = {"accessKey": env("S3_ACCESS_KEY", ""), "secretKey": env("S3_SECRET_KEY", "")}
if env("POSTGRES_PASSWORD"):
    values["postgresql"] = {"auth": {"password": env("POSTGRES_PASSWORD")}}
print(json.dumps(values))
endef
export DEPLOY_CREDENTIALS_JSON

chart-lint: install  ## lint and render the chart with Helm's engine, validate it for Kubernetes
	$(PY) -m pytest -q tests/chart
