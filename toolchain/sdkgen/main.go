// pulumi-sdkgen: the GeneratePackage step of Pulumi's official Node.js, Go and Python language
// hosts, for the offline equivalents in offline_plugins/ (the official hosts' modules are not
// served by the Go module proxy here; the codegen in pulumi/pkg/v3 is). It does what the
// official hosts' GeneratePackage does with the request it is given:
//
//	pulumi-sdkgen -language nodejs|go|python -dir OUT -loader ADDR [-local] <request.json
//
// request.json: {"schema": "...", "extra_files": {"name": "base64"}, "local_dependencies": {}}.
// Error diagnostics of the schema are printed on stderr and end it with exit code 1.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	gogen "github.com/pulumi/pulumi/pkg/v3/codegen/go"
	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/python"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

type request struct {
	Schema            string            `json:"schema"`
	ExtraFiles        map[string][]byte `json:"extra_files"`
	LocalDependencies map[string]string `json:"local_dependencies"`
}

func main() {
	language := flag.String("language", "", "nodejs, go or python")
	dir := flag.String("dir", "", "the folder the SDK is written to")
	loaderTarget := flag.String("loader", "", "the engine's schema loader address")
	local := flag.Bool("local", false, "generate a local SDK (nodejs)")
	flag.Parse()
	if *dir == "" || *language == "" {
		fail(fmt.Errorf("usage: pulumi-sdkgen -language L -dir DIR [-loader ADDR] [-local] <request.json"))
	}

	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(fmt.Errorf("reading the request: %w", err))
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal([]byte(req.Schema), &spec); err != nil {
		fail(fmt.Errorf("the schema is not valid JSON: %w", err))
	}

	var loader schema.ReferenceLoader
	if *loaderTarget != "" {
		client, err := schema.NewLoaderClient(*loaderTarget)
		if err != nil {
			fail(err)
		}
		defer client.Close()
		loader = schema.NewCachedLoader(client)
	}
	var bindLoader schema.Loader = schema.NewNullLoader()
	if loader != nil {
		bindLoader = loader
	}
	pkg, diags, err := schema.BindSpec(spec, bindLoader, schema.ValidationOptions{AllowDanglingReferences: true})
	if err != nil {
		fail(err)
	}
	for _, d := range diags {
		fmt.Fprintln(os.Stderr, d.Error())
	}
	if diags.HasErrors() {
		os.Exit(1)
	}

	var files map[string][]byte
	switch *language {
	case "nodejs":
		files, err = nodejs.GeneratePackage(
			"pulumi-language-nodejs", pkg, req.ExtraFiles, req.LocalDependencies, *local, loader)
	case "go":
		files, err = gogen.GeneratePackage("pulumi-language-go", pkg, req.LocalDependencies)
	case "python":
		files, err = python.GeneratePackage("pulumi-language-python", pkg, req.ExtraFiles, loader)
	default:
		err = fmt.Errorf("unknown language %q (nodejs, go or python)", *language)
	}
	if err != nil {
		fail(err)
	}
	for name, data := range files {
		path := filepath.Join(*dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pulumi-sdkgen:", err)
	os.Exit(1)
}
