#!/usr/bin/env python3
"""Offline validation of cras's deployment manifests (deploy/kubernetes, deploy/kserve).

    python deploy/validate.py [-k 1.30.0 -k 1.34.0] FILE_OR_FOLDER...
    python deploy/validate.py --extract CRD.yaml VERSION OUT.json.gz

Needs PyYAML, jsonschema and kubernetes-validate (PyPI). Every YAML document found is checked:

- Kubernetes kinds: against the Kubernetes OpenAPI schemas of each -k version, strict
  (unknown fields rejected), with kubernetes-validate. A kind it has no schema for is an error
  (the tool itself only warns).
- KServe kinds (serving.kserve.io ClusterServingRuntime v1alpha1, InferenceService v1beta1):
  against the openAPIV3Schema of their CustomResourceDefinitions (deploy/schemas/, see its
  README), made strict as the API server's strict field validation is: an object schema that
  lists properties and does not preserve unknown fields rejects other fields.
- Kustomizations: every resource listed exists, and every manifest of the folder is listed.
- Across the documents: selectors match their pod templates, Services/HPAs/PDBs point at a
  Deployment of the set, volume mounts name a volume, claims and ConfigMaps used are defined,
  an Indexed Job's `--shard ...$(JOB_COMPLETION_INDEX)/N` has N = completions, an
  InferenceService's runtime exists and supports its model format and protocol.

Prints one line per document and problem; exit code 1 when any check fails.
"""

import argparse
import gzip
import json
import os
import re
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "schemas")
KSERVE = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"):
        "serving.kserve.io_v1alpha1_clusterservingruntime.json.gz",
    ("serving.kserve.io/v1beta1", "InferenceService"):
        "serving.kserve.io_v1beta1_inferenceservice.json.gz",
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def strict(schema):
    """A copy of an OpenAPI v3 schema in which objects with properties reject other fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def load_schema(name):
    with gzip.open(os.path.join(SCHEMAS, name), "rt") as f:
        return strict(json.load(f))


def documents(paths):
    """(file, index, document) for every YAML document of the files and folders given."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, n) for n in names if n.endswith((".yaml", ".yml"))]
        else:
            files.append(p)
    out = []
    for f in sorted(files):
        with open(f) as fh:
            for i, doc in enumerate(yaml.safe_load_all(fh)):
                if doc is not None:
                    out.append((f, i, doc))
    return out


def where(f, i, doc):
    meta = doc.get("metadata") or {}
    return f"{f}#{i} {doc.get('kind', '?')}/{meta.get('name', '?')}"


def check_kustomization(f, doc):
    folder = os.path.dirname(f)
    problems = []
    listed = set()
    for r in doc.get("resources", []):
        path = os.path.normpath(os.path.join(folder, r))
        listed.add(path)
        if not os.path.exists(path):
            problems.append(f"resource {r}: no such file")
    for n in sorted(os.listdir(folder)):
        path = os.path.join(folder, n)
        if n.endswith((".yaml", ".yml")) and n != os.path.basename(f) and path not in listed:
            problems.append(f"{n} is in the folder but not in resources")
    return problems


def check_kubernetes(doc, versions):
    import kubernetes_validate.utils as kv

    problems = []
    for v in versions:
        try:
            kv.validate(doc, v, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"Kubernetes {v}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problems.append(f"Kubernetes {v}: no schema: {e.message}")
    return problems


def check_kserve(doc, schemas):
    key = (doc.get("apiVersion"), doc.get("kind"))
    validator = jsonschema.Draft7Validator(schemas[key])
    problems = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in e.path)
        problems.append(f"KServe CRD schema: {path}: {e.message}")
    name = (doc.get("metadata") or {}).get("name", "")
    if not DNS1123.match(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label")
    return problems


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"], doc["spec"]["template"]["metadata"].get("labels", {})
    return None, None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod(doc, defined):
    spec, labels = pod_spec(doc)
    problems = []
    selector = (doc["spec"].get("selector") or {}).get("matchLabels")
    if doc["kind"] != "Job" and not matches(selector, labels):
        problems.append("spec.selector.matchLabels does not match the pod template's labels")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and ("PersistentVolumeClaim", claim) not in defined:
            problems.append(f"volume {v['name']}: claim {claim} is not defined in these files")
        cm = (v.get("configMap") or {}).get("name")
        if cm and ("ConfigMap", cm) not in defined:
            problems.append(f"volume {v['name']}: ConfigMap {cm} is not defined in these files")
    for c in spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                problems.append(f"container {c['name']}: mount {m['name']} names no volume")
        env = {e["name"] for e in c.get("env", [])}
        if doc["kind"] == "Job" and doc["spec"].get("completionMode") == "Indexed":
            env.add("JOB_COMPLETION_INDEX")
        for a in c.get("args", []) + c.get("command", []):
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(a)):
                if var not in env:
                    problems.append(f"container {c['name']}: $({var}) is not in its environment")
        if doc["kind"] == "Job":
            problems += check_shards(doc, c)
    return problems


def check_shards(doc, container):
    args = [str(a) for a in container.get("command", []) + container.get("args", [])]
    if "--shard" not in args:
        return []
    value = args[args.index("--shard") + 1]
    m = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", value)
    spec = doc["spec"]
    if not m:
        return [f"--shard {value}: expected $(JOB_COMPLETION_INDEX)/N"]
    problems = []
    if spec.get("completionMode") != "Indexed":
        problems.append("--shard from JOB_COMPLETION_INDEX needs completionMode: Indexed")
    if int(m.group(1)) != spec.get("completions"):
        problems.append(f"--shard .../{m.group(1)} but completions: {spec.get('completions')}")
    return problems


def check_targets(doc, pods):
    kind = doc["kind"]
    spec = doc["spec"]
    if kind == "HorizontalPodAutoscaler":
        ref = spec["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in pods:
            return [f"scaleTargetRef {ref['kind']}/{ref['name']} is not defined in these files"]
        return []
    selector = spec.get("selector") or {}
    if kind == "PodDisruptionBudget":
        selector = selector.get("matchLabels") or {}
    if not any(matches(selector, labels) for labels in pods.values()):
        return [f"selector {selector} matches no pod template of these files"]
    return []


def check_isvc(doc, runtimes):
    model = doc["spec"]["predictor"].get("model") or {}
    name = model.get("runtime")
    if name is None:
        return []
    if name not in runtimes:
        return [f"runtime {name} is not defined in these files"]
    rt = runtimes[name]["spec"]
    problems = []
    fmt = (model.get("modelFormat") or {}).get("name")
    if fmt not in [f.get("name") for f in rt.get("supportedModelFormats", [])]:
        problems.append(f"runtime {name} does not support the model format {fmt}")
    proto = model.get("protocolVersion")
    if proto and proto not in rt.get("protocolVersions", []):
        problems.append(f"runtime {name} does not speak protocol {proto}")
    return problems


def validate(paths, versions):
    docs = documents(paths)
    if not docs:
        print("no YAML documents found", file=sys.stderr)
        return 1
    schemas = {k: load_schema(v) for k, v in KSERVE.items()}
    defined = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for _, _, d in docs}
    pods = {}
    for _, _, d in docs:
        if d.get("kind") == "Deployment":
            pods[("Deployment", d["metadata"]["name"])] = pod_spec(d)[1]
    runtimes = {d["metadata"]["name"]: d for _, _, d in docs if d.get("kind") == "ClusterServingRuntime"}
    failed = 0
    for f, i, d in docs:
        api = str(d.get("apiVersion", ""))
        if api.startswith("kustomize.config.k8s.io/"):
            problems = check_kustomization(f, d)
        elif (api, d.get("kind")) in KSERVE:
            problems = check_kserve(d, schemas)
            if not problems and d.get("kind") == "InferenceService":
                problems = check_isvc(d, runtimes)
        elif api.startswith("serving.kserve.io/"):
            problems = [f"no schema for {api} {d.get('kind')} in {SCHEMAS}"]
        else:
            problems = check_kubernetes(d, versions)
            if not problems and pod_spec(d)[0] is not None:
                problems = check_pod(d, defined)
            if not problems and d.get("kind") in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
                problems = check_targets(d, pods)
        status = "ok" if not problems else "FAILED"
        print(f"{status:6} {where(f, i, d)}")
        for p in problems:
            print(f"         {p}")
        failed += bool(problems)
    print(f"{len(docs)} documents, {failed} failed (Kubernetes {', '.join(versions)}; KServe schemas of {SCHEMAS})")
    return 1 if failed else 0


def extract(crd_path, version, out):
    """Writes the openAPIV3Schema of `version` of a CRD as compact, reproducible gzipped JSON."""
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    found = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not found:
        sys.exit(f"{crd_path}: no version {version}")
    data = json.dumps(found[0]["schema"]["openAPIV3Schema"], sort_keys=True, separators=(",", ":"))
    with open(out, "wb") as f:
        f.write(gzip.compress(data.encode(), 9, mtime=0))
    print(f"{out}: {len(data)} bytes of JSON")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", "--kubernetes-version", action="append",
                    help="Kubernetes version(s) to validate against (default 1.30.0 and 1.34.0)")
    ap.add_argument("--extract", nargs=3, metavar=("CRD", "VERSION", "OUT"),
                    help="write a CRD version's openAPIV3Schema as gzipped JSON, then exit")
    ap.add_argument("paths", nargs="*")
    a = ap.parse_args()
    if a.extract:
        return extract(*a.extract)
    if not a.paths:
        ap.error("name the files or folders to validate")
    return validate(a.paths, a.kubernetes_version or ["1.30.0", "1.34.0"])


if __name__ == "__main__":
    sys.exit(main())
