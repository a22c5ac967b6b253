// Renders a Helm chart the way `helm template` does, with the engine Helm itself uses: Go's text/template and
// the sprig function library, plus the few Helm functions and objects the MoeMesh chart uses (include, tpl,
// required, fail, toYaml, fromYaml, toJson, .Release, .Chart, .Capabilities, .Files, .Template). No helm binary
// and no cluster are needed: the chart tests run this and check what comes out.
//
// Usage (GOPATH mode, with Debian's golang-github-masterminds-sprig-dev and golang-gopkg-yaml.v3-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go CHART_DIR [-f VALUES.yaml]... [--name N]
//	    [--namespace NS] [--api-versions GROUP/VERSION]... [--notes] [--values-json]
//
// Prints every rendered manifest as a YAML document headed "# Source: CHART/templates/FILE"; --notes prints
// the rendered NOTES.txt instead, and --values-json the merged values as JSON (what values.schema.json checks).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions apiVersions
}

type kubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k kubeVersion) String() string { return k.Version }

type apiVersions []string

// Has says whether the cluster serves a group/version (or a group/version/Kind), as Helm's .Capabilities.APIVersions.Has.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v || strings.HasPrefix(v, x+"/") {
			return true
		}
	}
	return false
}

type files struct{ root string }

// Get returns a chart file's content, "" when absent (as Helm's .Files.Get).
func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.root, name))
	if err != nil {
		return ""
	}
	return string(b)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "chart-render: "+format+"\n", args...)
	os.Exit(1)
}

func readYaml(file string) map[string]interface{} {
	b, err := os.ReadFile(file)
	if err != nil {
		fail("%v", err)
	}
	var v map[string]interface{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		fail("%s: %v", file, err)
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return v
}

// merge lays src over dst as Helm merges value files: maps merge key by key, anything else replaces, and a
// null removes the key.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYaml(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJson(v interface{}) string {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return ""
	}
	return string(b)
}

// jsonable turns yaml.v3's map[string]interface{} trees (and any map[interface{}]interface{}) into what
// encoding/json takes.
func jsonable(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		out := map[string]interface{}{}
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case map[interface{}]interface{}:
		out := map[string]interface{}{}
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}

func main() {
	var chartDir, name, namespace string
	var valueFiles []string
	api := apiVersions{"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1"}
	notes, valuesJson := false, false
	name, namespace = "moemesh", "default"
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		next := func() string {
			i++
			if i >= len(args) {
				fail("%s needs a value", args[i-1])
			}
			return args[i]
		}
		switch args[i] {
		case "-f", "--values":
			valueFiles = append(valueFiles, next())
		case "--name":
			name = next()
		case "--namespace":
			namespace = next()
		case "--api-versions":
			api = append(api, next())
		case "--notes":
			notes = true
		case "--values-json":
			valuesJson = true
		default:
			if chartDir != "" {
				fail("unexpected argument %q", args[i])
			}
			chartDir = args[i]
		}
	}
	if chartDir == "" {
		fail("usage: main.go CHART_DIR [-f VALUES]... [--name N] [--namespace NS] [--api-versions G/V]... [--notes] [--values-json]")
	}

	chart := readYaml(filepath.Join(chartDir, "Chart.yaml"))
	values := readYaml(filepath.Join(chartDir, "values.yaml"))
	for _, f := range valueFiles {
		values = merge(values, readYaml(f))
	}
	if valuesJson {
		fmt.Println(toJson(values))
		return
	}
	chartName := fmt.Sprint(chart["name"])
	top := map[string]interface{}{
		"Values": values,
		"Chart": map[string]interface{}{
			"Name": chartName, "Version": fmt.Sprint(chart["version"]), "AppVersion": fmt.Sprint(chart["appVersion"]),
			"Description": fmt.Sprint(chart["description"]),
		},
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": capabilities{KubeVersion: kubeVersion{"v1.32.0", "1", "32"}, APIVersions: api},
		"Files":        files{chartDir},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYaml
	funcs["fromYaml"] = fromYaml
	funcs["toJson"] = toJson
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs).Option("missingkey=zero")

	var names []string
	err := filepath.Walk(filepath.Join(chartDir, "templates"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		full := path.Join(chartName, filepath.ToSlash(rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(full).Parse(string(b)); err != nil {
			return err
		}
		names = append(names, full)
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	sort.Strings(names)
	for _, n := range names {
		base := path.Base(n)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(chartName, "templates")}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			fail("%v", err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		if notes {
			fmt.Print(out)
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, strings.TrimSpace(out))
	}
}
