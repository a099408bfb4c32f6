// The agency workload image's program (`cargo xtask images`): a static HTTP server with no dependencies.
module govpaas.local/echo

go 1.26.0
