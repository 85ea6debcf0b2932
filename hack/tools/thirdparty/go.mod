// Pinned third-party sources the project reads at set-up time (CRDs, kwok stages, docs).
// Nothing here is built: hack/thirdparty.sh downloads these modules and prints their paths.
module mall-operator/hack/tools/thirdparty

go 1.26

require (
	github.com/cloudnative-pg/cloudnative-pg v1.30.1
	github.com/cloudnative-pg/plugin-barman-cloud v0.15.0
	sigs.k8s.io/gateway-api v1.5.0
	sigs.k8s.io/external-dns v0.22.0
	sigs.k8s.io/kwok v0.8.0
)
