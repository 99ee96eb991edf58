// Command etcd is the etcd server, built from the pinned go.etcd.io/etcd/server/v3 release. The
// server module cannot be `go install`ed (its go.mod replaces its sibling modules with local
// directories), so this wrapper requires it and its siblings at the same published version and
// does what etcd's own main does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
