#!/usr/bin/env python3
"""Checks a `cras serve` (or any server of the same model) through NVIDIA's own client,
`tritonclient.http` (PyPI: tritonclient[http]), over the Open Inference Protocol (KServe v2).

Usage (stable; used by tests/serve_oip.rs and by container checks):

    python tests/oip/check_oip.py --url http://127.0.0.1:8080 --model NAME \
        [--token-file FILE] [--class CLASS] [--tensor BATCH.npy] \
        [--expect PREDICT.jsonl] IMAGES...

What it does, in order, with `tritonclient.http.InferenceServerClient`:
  is_server_live, is_server_ready, is_model_ready, get_server_metadata, get_model_metadata;
  infer on IMAGES (encoded files) as a BYTES input `image_bytes`:
    "binary"       binary request data, every output asked for with binary_data=True;
    "json"         base64 strings in the JSON request, every output as JSON data;
    "all_outputs"  binary request data, no outputs named (the client then asks for all, binary);
    with --class CLASS: "class_name" (BYTES input) and "stated_class" (INT64 input, the class's
    index from the model metadata's parameters.classes), every image stated as CLASS;
  with --tensor: "tensor", the FP32 input `image` [B, 3, S, S] read from a .npy file;
  an inference on an unknown model name (expects the client to raise with status 404).

It prints one JSON object: {"live", "ready", "model_ready", "server_metadata", "metadata",
"runs": {RUN: {"image_score_bits": [uint32 bits of each FP32 score], "class_similarity_bits",
"threshold_bits", "class_index", "matched_class", "class_name", "decision", "is_anomalous",
"anomaly_map_shape", "anomaly_map_sha256": [hex SHA-256 of each image's map as little-endian
FP32], "parameters": the answer's parameters}}, "unknown_model": {"status", "message"},
"problems": [...]}.

--expect PREDICT.jsonl: the lines `cras predict --model M IMAGES...` printed (matched to IMAGES by
path, else by file name). Every run on IMAGES without a stated class must then give the same
scores bit for bit, classes and decisions; "binary", "json" and "all_outputs" must agree with
each other in every output. Any difference is listed under "problems" and the exit code is 1.
Exit code 2: tritonclient cannot be imported (install tritonclient[http]).
"""

import argparse
import base64
import hashlib
import json
import os
import sys

try:
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
except ImportError as e:  # pragma: no cover - reported to the caller
    print(f"tritonclient not importable: {e}", file=sys.stderr)
    sys.exit(2)

OUTPUTS = [
    "image_score",
    "class_index",
    "matched_class",
    "class_similarity",
    "anomaly_map",
    "class_name",
    "threshold",
    "is_anomalous",
    "decision",
]


def bits(values):
    return [int(b) for b in np.asarray(values, dtype="<f4").reshape(-1).view("<u4")]


def texts(values):
    out = []
    for v in np.asarray(values).reshape(-1):
        out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return out


def summarize(result):
    """The outputs of one InferResult in comparable form."""
    maps = result.as_numpy("anomaly_map")
    return {
        "image_score_bits": bits(result.as_numpy("image_score")),
        "class_similarity_bits": bits(result.as_numpy("class_similarity")),
        "threshold_bits": bits(result.as_numpy("threshold")),
        "class_index": [int(x) for x in result.as_numpy("class_index").reshape(-1)],
        "matched_class": [int(x) for x in result.as_numpy("matched_class").reshape(-1)],
        "class_name": texts(result.as_numpy("class_name")),
        "decision": texts(result.as_numpy("decision")),
        "is_anomalous": [int(x) for x in result.as_numpy("is_anomalous").reshape(-1)],
        "anomaly_map_shape": list(maps.shape),
        "anomaly_map_sha256": [
            hashlib.sha256(np.ascontiguousarray(m, dtype="<f4").tobytes()).hexdigest()
            for m in maps
        ],
        "parameters": result.get_response().get("parameters", {}),
    }


def bytes_input(files, binary):
    """The BYTES input `image_bytes` [B]: raw file bytes (binary) or base64 strings (JSON)."""
    if binary:
        data = np.array(files, dtype=np.object_)
    else:
        data = np.array([base64.b64encode(f) for f in files], dtype=np.object_)
    tensor = httpclient.InferInput("image_bytes", [len(files)], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor


def requested(binary):
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]


def infer(client, model, inputs, outputs, headers):
    return summarize(client.infer(model, inputs, outputs=outputs, headers=headers))


def run_all(client, args, files, headers, classes):
    runs = {
        "binary": infer(client, args.model, [bytes_input(files, True)], requested(True), headers),
        "json": infer(client, args.model, [bytes_input(files, False)], requested(False), headers),
        "all_outputs": infer(client, args.model, [bytes_input(files, True)], None, headers),
    }
    if args.class_name is not None:
        n = len(files)
        names = httpclient.InferInput("class_name", [n], "BYTES")
        names.set_data_from_numpy(np.array([args.class_name.encode()] * n, dtype=np.object_))
        runs["class_name"] = infer(
            client, args.model, [bytes_input(files, True), names], requested(True), headers
        )
        index = httpclient.InferInput("stated_class", [n], "INT64")
        index.set_data_from_numpy(np.full([n], classes.index(args.class_name), dtype=np.int64))
        runs["stated_class"] = infer(
            client, args.model, [bytes_input(files, True), index], requested(True), headers
        )
    if args.tensor:
        batch = np.load(args.tensor).astype(np.float32)
        image = httpclient.InferInput("image", list(batch.shape), "FP32")
        image.set_data_from_numpy(batch, binary_data=True)
        runs["tensor"] = infer(client, args.model, [image], requested(True), headers)
    return runs


def unknown_model(client, files, headers):
    try:
        client.infer("no-such-model", [bytes_input(files[:1], True)], headers=headers)
    except InferenceServerException as e:
        return {"status": e.status(), "message": e.message()}
    return {"status": None, "message": "no error raised"}


def expected_lines(path, images):
    """The `cras predict` lines for IMAGES, in their order."""
    lines = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    by_path = {l.get("path"): l for l in lines}
    by_name = {}
    for l in lines:
        by_name.setdefault(os.path.basename(l.get("path", "")), []).append(l)
    out = []
    for image in images:
        line = by_path.get(image)
        if line is None and len(by_name.get(os.path.basename(image), [])) == 1:
            line = by_name[os.path.basename(image)][0]
        if line is None:
            raise SystemExit(f"--expect {path} has no line for {image}")
        out.append(line)
    return out


def compare(report, expect, images):
    problems = []
    runs = report["runs"]
    for key in ["image_score_bits", "class_name", "decision", "anomaly_map_sha256", "class_index"]:
        for other in ["json", "all_outputs"]:
            if runs[other][key] != runs["binary"][key]:
                problems.append(f"run '{other}' differs from 'binary' in {key}")
    if expect:
        lines = expected_lines(expect, images)
        want_bits = bits([l["score"] for l in lines])
        for run in ["binary", "json", "all_outputs"]:
            got = runs[run]
            for i, image in enumerate(images):
                if got["image_score_bits"][i] != want_bits[i]:
                    problems.append(f"{run}: {image}: score bits {got['image_score_bits'][i]} != cras predict {want_bits[i]}")
                if got["class_name"][i] != lines[i]["class"]:
                    problems.append(f"{run}: {image}: class {got['class_name'][i]} != {lines[i]['class']}")
                if got["decision"][i] != lines[i]["decision"]:
                    problems.append(f"{run}: {image}: decision {got['decision'][i]} != {lines[i]['decision']}")
    if not (report["live"] and report["ready"] and report["model_ready"]):
        problems.append("the server or the model is not live and ready")
    if str(report["unknown_model"]["status"]) != "404":
        problems.append(f"unknown model answered {report['unknown_model']}, not 404")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT of the server")
    parser.add_argument("--model", required=True, help="the model name (cras serve --model-name)")
    parser.add_argument("--token-file", help="bearer token file (cras serve --token-file)")
    parser.add_argument("--class", dest="class_name", help="also infer with every image stated as this class")
    parser.add_argument("--tensor", help=".npy FP32 [B,3,S,S] batch to send as the input 'image'")
    parser.add_argument("--expect", help="JSON lines of `cras predict` for IMAGES")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    url = args.url.split("://", 1)[-1].rstrip("/")
    headers = None
    if args.token_file:
        token = open(args.token_file, encoding="utf-8").read().strip()
        headers = {"Authorization": f"Bearer {token}"}
    files = [open(p, "rb").read() for p in args.images]
    client = httpclient.InferenceServerClient(url=url, network_timeout=120.0)
    metadata = client.get_model_metadata(args.model, headers=headers)
    classes = metadata.get("parameters", {}).get("classes", [])
    report = {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "model_ready": client.is_model_ready(args.model, headers=headers),
        "server_metadata": client.get_server_metadata(headers=headers),
        "metadata": metadata,
        "runs": run_all(client, args, files, headers, classes),
        "unknown_model": unknown_model(client, files, headers),
    }
    report["problems"] = compare(report, args.expect, args.images)
    client.close()
    print(json.dumps(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
