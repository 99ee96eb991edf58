// Command gocheck does the image tier's checks that need Go's own libraries, so they are the
// real decoders and template engine rather than Python imitations:
//
//	gocheck kind-config FILE   decode FILE as kind decodes a cluster config (apiVersion and kind
//	                           first, then a strict decode into v1alpha4.Cluster, unknown fields
//	                           refused), apply kind's v1alpha4 defaults, print the result as JSON
//	gocheck template TEXT      expand TEXT with Go's text/template over a map of strings read as
//	                           JSON from stdin, the way skaffold expands setValueTemplates
//
// Built and run by tests/image (go build, cached by Go); exit 1 with the error on stderr.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func kindConfig(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var tm v1alpha4.TypeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return fmt.Errorf("could not determine kind / apiVersion for config: %w", err)
	}
	if tm.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return fmt.Errorf("unknown apiVersion: %s", tm.APIVersion)
	}
	if tm.Kind != "Cluster" {
		return fmt.Errorf("unknown kind %s for apiVersion: %s", tm.Kind, tm.APIVersion)
	}
	cfg := &v1alpha4.Cluster{}
	d := yaml.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(cfg); err != nil {
		return fmt.Errorf("unable to decode config: %w", err)
	}
	v1alpha4.SetDefaultsCluster(cfg)
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(cfg)
}

func expand(text string) error {
	env := map[string]string{}
	if err := json.NewDecoder(os.Stdin).Decode(&env); err != nil {
		return fmt.Errorf("reading the variables: %w", err)
	}
	t, err := template.New("envTemplate").Parse(text)
	if err != nil {
		return err
	}
	return t.Execute(os.Stdout, env)
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "kind-config":
		err = kindConfig(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "template":
		err = expand(os.Args[2])
	default:
		err = fmt.Errorf("usage: gocheck kind-config FILE | gocheck template TEXT")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
