// Command coredns is CoreDNS with just the plugins a one-node test cluster needs:
// cluster names from the API server (kubernetes), bound to the node address (bind),
// with errors, cache and round-robin answers. No forward plugin: the machine has no
// upstream resolver worth asking. scripts/real-cluster.sh builds and runs it.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
