# rds-csi: `make demo` runs the driver's main job on the built-in simulator; `make test` runs every test.
GO        ?= go
BIN       := bin
GOFLAGS   ?=
# The pinned helm (hack/helm.sh builds it from Go modules once, into the cache outside the repo).
HELM      := $(shell hack/helm.sh --print-bin)
export GOTOOLCHAIN := local

.PHONY: all build demo test unit lint fuzz bench clean k8s-bins

all: build

build:
	$(GO) build -o $(BIN)/rds-csi ./cmd/rds-csi
	$(GO) build -o $(BIN)/rdssim ./cmd/rdssim
	$(GO) build -o $(BIN)/rds-demo ./cmd/rds-demo

demo:
	hack/deps.sh
	$(MAKE) build
	$(BIN)/rds-demo --driver $(BIN)/rds-csi --simulator $(BIN)/rdssim

## test: vet, then every test with the race detector (node and sanity tests need root; test/vm boots
## the qemu guest of test-vm).
test: k8s-bins $(HELM)
	$(GO) vet ./...
	RDS_CSI_K8S_BINS=$$(hack/k8s-bins.sh --print-dir) RDS_CSI_HELM=$(HELM) $(GO) test -race -count=1 -timeout 40m ./...

## unit: the fast tests only (no root, no Kubernetes API server).
unit:
	$(GO) test -race -short ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) vet -tags vmguest ./test/vm/...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags vmguest ./test/vm/...

## test-vm: the node service over the kernel's NVMe/TCP, in a qemu guest (TCG) that hack/vm.sh builds
## from Debian's kernel and caches under /var/cache/rds-csi/vm; root. Also part of `make test`.
.PHONY: test-vm
test-vm:
	$(GO) test -count=1 -timeout 60m -v ./test/vm/

## fuzz: run each parser fuzzer for FUZZTIME (new findings land in testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	for f in FuzzParsePrintDetail FuzzParseWrapped FuzzCheckOutput FuzzCommandBuilders; do \
		$(GO) test -run=^$$ -fuzz=^$$f$$ -fuzztime=$(FUZZTIME) ./pkg/routeros/ || exit 1; \
	done

## bench: figures, each a ratio against a baseline measured in the same run; the cluster section
## runs test/cluster's real cluster (root; the images and binaries of cluster-test).
bench: build k8s-bins $(HELM)
	ref=$$(RDS_CSI_REGISTRY_PORT=$(IMAGE_PORT) hack/image.sh) && \
	RDS_CSI_REGISTRY_PORT=$(IMAGE_PORT) hack/cluster-bins.sh && \
	$(CLUSTER_ENV) $(GO) run ./cmd/rds-bench

## soak: chaos soak (random CSI calls through the rds-csi binary while faults are injected; root),
## SOAK_DURATION long (10m); extra flags in SOAK_ARGS, e.g. SOAK_ARGS=--seed=N to replay a run.
SOAK_DURATION ?= 10m
.PHONY: soak
soak:
	$(GO) build -o $(BIN)/rds-csi ./cmd/rds-csi
	$(GO) run ./cmd/rds-soak --driver $(BIN)/rds-csi --duration=$(SOAK_DURATION) $(SOAK_ARGS)

## k8s-bins: kube-apiserver and etcd built from Go modules, cached outside the repo.
k8s-bins:
	hack/k8s-bins.sh

## The pinned helm, built once by hack/helm.sh.
$(HELM):
	hack/helm.sh

## manifests: deploy/kubernetes/rds-csi.yaml rendered from the chart (test/chart fails if they differ;
## keep these arguments the same as manifestsArgs there).
.PHONY: manifests chart-test
manifests: $(HELM)
	$(HELM) template rds-csi deploy/helm/rds-csi --namespace rds-csi --values deploy/kubernetes/values.yaml >deploy/kubernetes/rds-csi.yaml.tmp
	mv deploy/kubernetes/rds-csi.yaml.tmp deploy/kubernetes/rds-csi.yaml

## chart-test: helm lint and template checks, and every rendered object created on a real
## kube-apiserver with RBAC (test/chart).
chart-test: k8s-bins $(HELM)
	RDS_CSI_K8S_BINS=$$(hack/k8s-bins.sh --print-dir) RDS_CSI_HELM=$(HELM) $(GO) test -race -count=1 -timeout 10m ./test/chart/

## image: the rds-csi image (the Dockerfile's, built without Docker: Debian base from debootstrap,
## assembled with crane), pushed to a registry on 127.0.0.1:$(IMAGE_PORT) that hack/image.sh starts,
## and saved as an OCI tarball in the cache (root; first run a few minutes, then seconds).
IMAGE_PORT ?= 5555
.PHONY: image
image:
	RDS_CSI_REGISTRY_PORT=$(IMAGE_PORT) hack/image.sh

clean:
	rm -rf $(BIN)

## cluster-test: a real cluster on this machine (test/cluster: etcd, kube-apiserver, controller-
## manager, scheduler, three real kubelets on containerd, the simulator as the RDS) with rds-csi
## installed by its chart; builds the rds-csi image (hack/image.sh) and the kubelet, controllers
## and CSI sidecar images (hack/cluster-bins.sh, cached; first run tens of minutes). Root.
.PHONY: cluster-test
CLUSTER_ENV = RDS_CSI_K8S_BINS=$$(hack/k8s-bins.sh --print-dir) RDS_CSI_HELM=$(HELM) \
	RDS_CSI_CLUSTER_BINS=$$(hack/cluster-bins.sh --print-dir) RDS_CSI_CRANE=$$(hack/image.sh --print-crane) \
	RDS_CSI_IMAGE=$$ref RDS_CSI_CLUSTER_REQUIRED=1
cluster-test: k8s-bins $(HELM)
	ref=$$(RDS_CSI_REGISTRY_PORT=$(IMAGE_PORT) hack/image.sh) && \
	RDS_CSI_REGISTRY_PORT=$(IMAGE_PORT) hack/cluster-bins.sh && \
	$(CLUSTER_ENV) $(GO) test -race -count=1 -timeout 45m -v ./test/cluster/
