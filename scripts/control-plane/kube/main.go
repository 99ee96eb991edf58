// Command kube is a multi-call binary holding the pinned Kubernetes components the cluster tier
// runs: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl. It picks the
// component from the name it was started under (scripts/control-plane/build.sh links each name
// to it), or from its first argument (`kube kubectl get pods`). One binary instead of four saves
// three links of most of the same code (minutes of CPU and about 300 MB of disk).
//
// Each branch does what the component's own cmd/<name>/main.go does upstream.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones, as in the upstream mains

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
)

var components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	if !known(name) && len(os.Args) > 1 && known(os.Args[1]) {
		name, os.Args = os.Args[1], os.Args[1:]
	}
	switch name {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubectl":
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "kube: run me as one of %s (a link with that name, or the first argument)\n",
			strings.Join(components, ", "))
		os.Exit(2)
	}
}

func known(name string) bool {
	for _, c := range components {
		if c == name {
			return true
		}
	}
	return false
}
