// Command kube is a multi-call binary holding the pinned Kubernetes components: the cluster
// tier's kube-apiserver, kube-controller-manager, kube-scheduler and kubectl, and the kind node
// image's kubelet, kubeadm and kube-proxy (scripts/images/, which also puts this binary into the
// control-plane images kubeadm asks for). It picks the
// component from the name it was started under (scripts/control-plane/build.sh links each name
// to it), or from its first argument (`kube kubectl get pods`). One binary instead of four saves
// links of most of the same code (minutes of CPU and hundreds of MB of disk); upstream's
// hyperkube did the same until Kubernetes 1.17.
//
// Each branch does what the component's own cmd/<name>/main.go does upstream.
package main

import (
	"context"
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
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubeadm "k8s.io/kubernetes/cmd/kubeadm/app"
	kubeadmerrors "k8s.io/kubernetes/cmd/kubeadm/app/util/errors"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
)

var components = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
	"kubelet", "kubeadm", "kube-proxy",
}

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
	case "kubelet":
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "kube-proxy":
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "kubeadm":
		kubeadmerrors.HandleError(kubeadm.Run())
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
