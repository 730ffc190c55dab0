#!/usr/bin/env python3
"""Generate crates/simcluster/data/protobuf-schema.txt: the protobuf field numbers of the Kubernetes kinds simcluster
serves, with their JSON names, so the API server can read the protobuf bodies kubectl's typed commands send.

Field numbers and types come from kube-rs's k8s-pb crate (prost code generated from Kubernetes' generated.proto);
JSON names come from k8s-openapi (its serde code spells each field as the API does: `podIPs`, `hostIPC`). Both
crates are in Cargo's registry once the workspace has been built (`cargo fetch`); run this from the repository root
after changing either crate's version, and commit the output.

Output, one line each:
    M <message>                      a message, named after its k8s-pb module path (api.core.v1.PodSpec)
    <tag> <jsonName> <type>          one of its fields; <type> is a scalar (string, int32, int64, bool, bytes,
                                     double), m:<message>, []<type> (repeated) or map:<type> (string keys)
    R <apiVersion> <kind> <message>  a kind a request body may carry
"""
import glob
import os
import re
import sys

REGISTRY = os.path.expanduser("~/.cargo/registry/src")
PB_VERSION = "0.9.0"
OPENAPI = ("0.29.0", ["v1_37", "v1_36", "v1_35", "v1_34", "v1_33"])

# The kinds simcluster serves, as (apiVersion, kind, k8s-pb module).
ROOTS = [
    ("v1", k, "api.core.v1")
    for k in ["Pod", "Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "Node", "Event",
              "PersistentVolumeClaim", "Binding", "Endpoints", "ResourceQuota"]
] + [
    ("apps/v1", "Deployment", "api.apps.v1"), ("apps/v1", "ReplicaSet", "api.apps.v1"),
    ("apps/v1", "StatefulSet", "api.apps.v1"), ("apps/v1", "DaemonSet", "api.apps.v1"),
    ("batch/v1", "Job", "api.batch.v1"), ("batch/v1", "CronJob", "api.batch.v1"),
    ("coordination.k8s.io/v1", "Lease", "api.coordination.v1"),
    ("policy/v1", "Eviction", "api.policy.v1"),
    ("authentication.k8s.io/v1", "TokenRequest", "api.authentication.v1"),
    ("autoscaling/v1", "Scale", "api.autoscaling.v1"),
    ("storage.k8s.io/v1", "StorageClass", "api.storage.v1"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api.discovery.v1"),
    ("networking.k8s.io/v1", "NetworkPolicy", "api.networking.v1"),
] + [("authorization.k8s.io/v1", k, "api.authorization.v1")
     for k in ["SubjectAccessReview", "SelfSubjectAccessReview", "LocalSubjectAccessReview"]] + [("rbac.authorization.k8s.io/v1", k, "api.rbac.v1")
     for k in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]]

# Messages the decoder reads itself (timestamps, quantities, int-or-string, raw JSON): their fields are not listed.
SPECIAL = {
    "apimachinery.pkg.apis.meta.v1.Time", "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration", "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.api.resource.Quantity", "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.runtime.RawExtension",
}


def crate_dir(name, version):
    found = glob.glob(os.path.join(REGISTRY, "*", f"{name}-{version}"))
    if not found:
        sys.exit(f"{name} {version} is not in {REGISTRY}: run `cargo fetch` (k8s-pb is a dev-dependency of simcluster)")
    return found[0]


STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)
FIELD = re.compile(r'(.*?)tag = "(\d+)"\)\]\s*pub (?:r#)?(\w+):(.*)', re.S)


def prost_messages(root):
    """{module.Struct: [(tag, rust_field, kind, repeated, map_value, message)]} for every k8s-pb message."""
    out = {}
    for path in glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), os.path.join(root, "src")).replace(os.sep, ".")
        text = open(path).read()
        for name, body in STRUCT.findall(text):
            fields = []
            for chunk in body.split("#[prost(")[1:]:
                m = FIELD.match(chunk)
                if not m:
                    continue
                attrs, tag, field, ty = m.groups()
                ty = " ".join(l.strip() for l in ty.split("\n") if not l.strip().startswith("///"))
                ty = ty.strip().rstrip(",").replace(", >", ">").replace(" ", "")
                attrs = attrs.strip().rstrip(",")
                parts = [a.strip() for a in attrs.split(",")]
                kind = parts[0].split("=")[0].strip()
                repeated = "repeated" in parts
                map_value = attrs.split('"')[1].split(",")[1].strip() if kind == "btree_map" else None
                fields.append((int(tag), field, kind, repeated, map_value, resolve(module, ty)))
            out[f"{module}.{name}"] = fields
    return out


def resolve(module, ty):
    """The message a Rust type path names, relative to `module` (`super::super::x::Y`); None for scalars."""
    ty = ty.strip()
    if "BTreeMap<" in ty:
        ty = ty.split(",", 1)[1].rstrip(">").strip()
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        ty = ty.replace(wrapper, "")
    segs = [s for s in ty.rstrip(">").split("::") if s]
    if not segs or segs[0] in ("prost", "core") or segs[-1] in ("String", "i32", "i64", "bool", "f64", "u8"):
        return None
    base = module.split(".")
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    return ".".join(base + segs)


def json_names(openapi_root, message, inlined_into):
    """{rust_field: jsonName} from k8s-openapi's deserializer for the same type, in the newest API version it has.
    A Go struct embedded inline (VolumeSource in Volume) has no type of its own there: its fields are the parent's."""
    if message in inlined_into:
        return json_names(openapi_root, inlined_into[message], inlined_into)
    module, name = message.rsplit(".", 1)
    names = {}
    for version in reversed(OPENAPI[1]):
        folder = os.path.join(openapi_root, "src", version, *module.split("."))
        # File names split acronyms their own way (downward_api_volume_source): match without underscores.
        files = {f[:-3].replace("_", ""): f for f in os.listdir(folder)} if os.path.isdir(folder) else {}
        path = os.path.join(folder, files.get(name.lower(), "-"))
        if os.path.exists(path):
            found = re.findall(r'"([^"]+)" => Field::Key_(\w+),', open(path).read())
            # prost and k8s-openapi split acronyms differently (pod_cid_rs, pod_cidrs): compare without underscores.
            names.update({key.replace("_", ""): json for json, key in found})
    return names


def main():
    pb = prost_messages(crate_dir("k8s-pb", PB_VERSION))
    openapi = crate_dir("k8s-openapi", OPENAPI[0])
    lines = []
    todo = [f"{m}.{k}" for _, k, m in ROOTS]
    seen = set()
    inlined_into = {}
    while todo:
        msg = todo.pop(0)
        if msg in seen or msg in SPECIAL:
            continue
        seen.add(msg)
        if msg not in pb:
            sys.exit(f"no k8s-pb message {msg}")
        names = json_names(openapi, msg, inlined_into)
        lines.append(f"M {msg}")
        for tag, field, kind, repeated, map_value, target in sorted(pb[msg]):
            key = field + "_" if field in ("type", "ref") else field
            json = names.get(key.replace("_", ""))
            if json is None and kind == "message" and not repeated:
                # An embedded Go struct (`json:",inline"`): its fields are the parent's in JSON.
                json = "-"
                inlined_into[target] = msg
            if json is None and msg.endswith(".ExtraValue"):
                # A Go []string in JSON, a message in protobuf: an access review's `extra`, which RBAC does not read.
                continue
            if json is None:
                sys.exit(f"{msg}.{field}: no JSON name in k8s-openapi")
            if kind == "btree_map":
                ty = "map:" + (f"m:{target}" if map_value == "message" else map_value)
            elif kind == "message":
                ty = f"m:{target}"
            else:
                ty = kind.split(" ")[0].replace('bytes = "vec"', "bytes")
            if kind == "bytes":
                ty = "bytes"
            if repeated:
                ty = "[]" + ty
            if target and (kind == "message" or map_value == "message"):
                todo.append(target)
            lines.append(f"{tag} {json} {ty}")
    lines += [f"R {v} {k} {m}.{k}" for v, k, m in ROOTS]
    out = os.path.join("crates", "simcluster", "data", "protobuf-schema.txt")
    with open(out, "w") as f:
        f.write("# Generated by scripts/gen-protobuf-schema.py from k8s-pb %s and k8s-openapi %s; do not edit.\n"
                % (PB_VERSION, OPENAPI[0]))
        f.write("\n".join(lines) + "\n")
    print(f"{out}: {len(seen)} messages, {sum(1 for l in lines if l[0].isdigit())} fields")


if __name__ == "__main__":
    main()
