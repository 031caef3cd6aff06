"""Checks one rendered kustomization (`kubectl kustomize DIR`) deploys where it says.

    python deploy/check_render.py RENDER.yaml --dir DIR --namespace NS --image IMAGE
        [--sidecar-image IMAGE]... [--external-secret NAME]... [--readme README.md]

Asserts, printing every failure as `DIR: Kind/name: what`:
- every namespaced object is in NS (an object an overlay adds does not inherit the base's
  `namespace:`), and a Namespace in the render is NS;
- every container, init container and ephemeral container runs IMAGE, the one release
  image, or one of the pinned --sidecar-image ones (git-sync);
- every in-cluster `http(s)://NAME[:PORT]` in a ConfigMap is a Service of this render in
  that namespace with that port, selecting a pod template of the render that has the
  Service's target port;
- every Secret a pod reads (env secretKeyRef, envFrom secretRef, a secret or projected
  volume, imagePullSecrets) is in the render, or is an --external-secret: one the user
  creates, for which a comment in DIR's files and the README each show
  `kubectl -n NS create secret ... NAME` with every key the pods read;
- every release-image container that serves or reconciles (not `--migrate-only`) and runs
  on a read-only root filesystem has a writable volume at /tmp (export pieces and other
  temporary files go there);
- every pod running `segmentctl serve` under a NetworkPolicy that limits its egress may
  reach TCP 443 (S3, for import and export jobs, and STS).
Needs PyYAML (the tools venv has it).
"""

import argparse
import glob
import os
import re
import sys

import yaml

# Kinds that live outside namespaces (the built-in ones a kustomization could hold).
CLUSTER_SCOPED = {
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding",
    "CSIDriver", "CSINode", "CustomResourceDefinition", "FlowSchema", "IngressClass",
    "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment",
}
URL = re.compile(r"\bhttps?://([A-Za-z0-9.-]+)(?::(\d+))?")
CREATE = re.compile(r"\bkubectl\b[^\n]*\bcreate\s+secret\s+\S+\s+([a-z0-9.-]+)")


def pod_specs(obj):
    """The pod spec of a workload (or a Pod), and the labels of its pods."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [(spec, (obj.get("metadata") or {}).get("labels") or {})]
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                "ReplicationController") and template:
        return [(template.get("spec") or {}, (template.get("metadata") or {}).get("labels") or {})]
    return []


def containers(pod):
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(field) or []:
            yield field, c


def secrets_read(pod):
    """(secret name, key or None, where) per read."""
    for field, c in containers(pod):
        where = f"{field}[{c.get('name')}]"
        for e in c.get("env") or []:
            ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or None
            if ref:
                yield ref.get("name"), ref.get("key"), f"{where} env {e.get('name')}"
        for e in c.get("envFrom") or []:
            ref = e.get("secretRef")
            if ref:
                yield ref.get("name"), None, f"{where} envFrom"
    for v in pod.get("volumes") or []:
        s = v.get("secret")
        if s:
            items = s.get("items") or [{}]
            for item in items:
                yield s.get("secretName"), item.get("key"), f"volume {v.get('name')}"
        for source in ((v.get("projected") or {}).get("sources")) or []:
            s = source.get("secret")
            if s:
                for item in s.get("items") or [{}]:
                    yield s.get("name"), item.get("key"), f"volume {v.get('name')}"
    for ref in pod.get("imagePullSecrets") or []:
        yield ref.get("name"), None, "imagePullSecrets"


def create_commands(text, namespace):
    """{secret name: set of keys} for each `kubectl ... create secret` in text (comment
    markers and line continuations removed) that names the namespace."""
    lines = [re.sub(r"^\s*(#|//)\s?", "", l) for l in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = {}
    for line in joined.splitlines():
        m = CREATE.search(line)
        if not m:
            continue
        if not re.search(rf"(-n\s+|--namespace[=\s]+){re.escape(namespace)}\b", line):
            continue
        keys = set(re.findall(r"--from-(?:literal|file)=([A-Za-z0-9._-]+)=", line))
        found.setdefault(m.group(1), set()).update(keys)
    return found


def comment_text(folder):
    """The comment lines of every YAML file in folder (a kustomization's own files)."""
    text = []
    for path in sorted(glob.glob(os.path.join(folder, "*.y*ml"))):
        with open(path, encoding="utf-8") as f:
            text += [l for l in f.read().splitlines() if l.lstrip().startswith("#")]
    return "\n".join(text)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("render")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--sidecar-image", action="append", default=[])
    ap.add_argument("--external-secret", action="append", default=[])
    ap.add_argument("--readme", default="README.md")
    a = ap.parse_args()

    with open(a.render, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    problems = []

    def problem(obj, what):
        meta = obj.get("metadata") or {}
        problems.append(f"{a.dir}: {obj.get('kind')}/{meta.get('name')}: {what}")

    def ns_of(obj):
        return (obj.get("metadata") or {}).get("namespace")

    # Namespaces.
    for o in objects:
        kind = o.get("kind")
        if kind == "Namespace":
            if (o.get("metadata") or {}).get("name") != a.namespace:
                problem(o, f"a Namespace other than {a.namespace}")
        elif kind not in CLUSTER_SCOPED and ns_of(o) != a.namespace:
            problem(o, f"namespace {ns_of(o) or '(none: the kubectl context default)'}, not {a.namespace}")

    # Images.
    release_containers = 0
    for o in objects:
        for pod, _ in pod_specs(o):
            for field, c in containers(pod):
                image = c.get("image")
                if image == a.image:
                    release_containers += 1
                elif image not in a.sidecar_image:
                    problem(o, f"{field}[{c.get('name')}] runs image {image!r}, not the release image {a.image}")
    if release_containers == 0:
        problems.append(f"{a.dir}: no container runs the release image {a.image}")

    # Services a ConfigMap names.
    services = {(o["metadata"]["name"], ns_of(o)): o for o in objects if o.get("kind") == "Service"}
    workloads = [(o, pod, labels) for o in objects for pod, labels in pod_specs(o)]
    for o in objects:
        if o.get("kind") != "ConfigMap":
            continue
        for key, value in ((o.get("data") or {}).items()):
            for m in URL.finditer(str(value)):
                host, port = m.group(1), m.group(2)
                labels = host.split(".")
                if len(labels) == 1:
                    name, ns = host, ns_of(o)
                elif host.endswith(".svc") or host.endswith(".svc.cluster.local"):
                    name, ns = labels[0], labels[1]
                else:
                    continue  # outside the cluster
                port = int(port) if port else (443 if m.group(0).startswith("https") else 80)
                svc = services.get((name, ns))
                if svc is None:
                    problem(o, f"data.{key} names {m.group(0)}, but the render has no Service {name} in {ns}")
                    continue
                ports = [p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port]
                if not ports:
                    problem(o, f"data.{key} names {m.group(0)}, but Service {name} does not expose port {port}")
                    continue
                selector = (svc.get("spec") or {}).get("selector") or {}
                target = ports[0].get("targetPort", port)
                backed = False
                for w, pod, pod_labels in workloads:
                    if ns_of(w) != ns or not selects(selector, pod_labels):
                        continue
                    for _, c in containers(pod):
                        for cp in c.get("ports") or []:
                            if target in (cp.get("name"), cp.get("containerPort")):
                                backed = True
                if not backed:
                    problem(o, f"data.{key} names {m.group(0)}, but no pod of the render behind Service {name} has port {target}")

    # Secrets.
    present = {(o["metadata"]["name"], ns_of(o)) for o in objects if o.get("kind") == "Secret"}
    overlay_commands = create_commands(comment_text(a.dir), a.namespace)
    with open(a.readme, encoding="utf-8") as f:
        readme_commands = create_commands(f.read(), a.namespace)
    for o in objects:
        for pod, _ in pod_specs(o):
            for name, key, where in secrets_read(pod):
                if (name, ns_of(o)) in present:
                    continue
                if name not in a.external_secret:
                    problem(o, f"{where} reads Secret {name}, which is neither in the render nor "
                               "an external Secret validate.sh lists")
                    continue
                for source, commands in ((f"a comment in {a.dir}", overlay_commands),
                                         (a.readme, readme_commands)):
                    if name not in commands:
                        problem(o, f"{where} reads Secret {name}: {source} does not show how to create "
                                   f"it (`kubectl -n {a.namespace} create secret generic {name} ...`)")
                    elif key and key not in commands[name]:
                        problem(o, f"{where} reads key {key} of Secret {name}: the command in {source} "
                                   f"does not create it (--from-literal={key}=...)")

    # Temporary files, and S3 for the server.
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for o in objects:
        claims = {((t.get("metadata") or {}).get("name"))
                  for t in ((o.get("spec") or {}).get("volumeClaimTemplates") or [])}
        for pod, labels in pod_specs(o):
            volumes = {v.get("name"): v for v in pod.get("volumes") or []}

            def writable(mount):
                """A mount files can be written to: not read-only, and of a volume that is
                (an emptyDir, an ephemeral or claimed volume; never a ConfigMap or Secret)."""
                if mount.get("readOnly"):
                    return False
                name = mount.get("name")
                v = volumes.get(name) or {}
                return name in claims or any(k in v for k in ("emptyDir", "ephemeral", "persistentVolumeClaim"))
            serves = False
            for field, c in containers(pod):
                if c.get("image") != a.image:
                    continue
                args = [str(x) for x in (c.get("args") or [])]
                if "--migrate-only" in args:
                    continue
                serves = serves or (args[:1] == ["serve"])
                read_only = ((c.get("securityContext") or {}).get("readOnlyRootFilesystem")) is True
                tmp = [m for m in c.get("volumeMounts") or []
                       if m.get("mountPath") == "/tmp" and writable(m)]
                if read_only and not tmp:
                    problem(o, f"{field}[{c.get('name')}] has a read-only root filesystem and no "
                               "writable volume at /tmp (an export job's pieces are written there)")
            if not serves:
                continue
            limiting = [p for p in policies if ns_of(p) == ns_of(o)
                        and "Egress" in ((p.get("spec") or {}).get("policyTypes") or [])
                        and all(labels.get(k) == v for k, v in
                                (((p.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}).items())]
            if not limiting:
                continue
            def https(rule):
                """A rule that lets the pod reach TCP 443 outside the cluster (S3): no `to`,
                or an ipBlock among them, and port 443 (or every port)."""
                to = rule.get("to")
                if to and not any("ipBlock" in peer for peer in to):
                    return False
                ports = rule.get("ports")
                if not ports:
                    return True
                return any(pt.get("port") == 443 and pt.get("protocol", "TCP") == "TCP" for pt in ports)
            if not any(https(rule) for p in limiting for rule in (p.get("spec") or {}).get("egress") or []):
                problem(o, "runs `segmentctl serve`, but no NetworkPolicy that selects it allows egress "
                           "to TCP 443 (S3, which import and export jobs read and write)")

    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"deploy: {a.dir} is all in namespace {a.namespace}, runs {a.image}, and every "
          "Service and Secret it names is there or documented")


if __name__ == "__main__":
    main()
