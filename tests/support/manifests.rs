//! Reading the Kubernetes manifests and the Envoy config as YAML, and the small lookups the
//! deploy tests use to cross-check them (containers, flags, ports, mounts, clusters).

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

pub const K8S_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
pub const ENVOY_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy/envoy.yaml");

/// One parsed YAML document and the file it came from.
pub struct Doc {
    pub file: String,
    pub yaml: Yaml,
}

pub fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(K8S_DIR)
        .expect("read deploy/kubernetes")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

pub fn parse_file(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not valid YAML: {err}", path.display()))
}

/// Every Kubernetes object (the kustomization excluded).
pub fn objects() -> Vec<Doc> {
    let mut docs = Vec::new();
    for path in manifest_files() {
        let file = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        if file == "kustomization.yaml" {
            continue;
        }
        for yaml in parse_file(&path) {
            docs.push(Doc {
                file: file.clone(),
                yaml,
            });
        }
    }
    docs
}

pub fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Yaml {
    let found = docs
        .iter()
        .find(|d| str_at(&d.yaml["kind"]) == kind && name_of(&d.yaml) == name);
    &found
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
        .yaml
}

pub fn str_at(yaml: &Yaml) -> &str {
    yaml.as_str().unwrap_or_default()
}

pub fn name_of(yaml: &Yaml) -> &str {
    str_at(&yaml["metadata"]["name"])
}

pub fn items(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map_or(&[], Vec::as_slice)
}

pub fn int_at(yaml: &Yaml, what: &str) -> i64 {
    yaml.as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {yaml:?}"))
}

pub fn container<'a>(deployment: &'a Yaml, name: &str) -> &'a Yaml {
    let containers = items(&deployment["spec"]["template"]["spec"]["containers"]);
    let found = containers.iter().find(|c| str_at(&c["name"]) == name);
    found.unwrap_or_else(|| panic!("no container {name} in {}", name_of(deployment)))
}

pub fn args(container: &Yaml) -> Vec<&str> {
    items(&container["args"]).iter().map(str_at).collect()
}

/// The value of `--flag=value` or `--flag value`.
pub fn flag<'a>(args: &[&'a str], name: &str) -> &'a str {
    let prefix = format!("{name}=");
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix(&prefix) {
            return value;
        }
        if *arg == name {
            return args
                .get(i + 1)
                .unwrap_or_else(|| panic!("{name} has no value"));
        }
    }
    panic!("flag {name} not in {args:?}")
}

pub fn port_of(addr: &str) -> i64 {
    let (_, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {addr}"));
    port.parse()
        .unwrap_or_else(|_| panic!("bad port in {addr}"))
}

pub fn container_port(container: &Yaml, name: &str) -> i64 {
    let ports = items(&container["ports"]);
    let port = ports.iter().find(|p| str_at(&p["name"]) == name);
    let port = port.unwrap_or_else(|| panic!("container has no port named {name}"));
    int_at(&port["containerPort"], name)
}

pub fn service_port<'a>(service: &'a Yaml, name: &str) -> &'a Yaml {
    let ports = items(&service["spec"]["ports"]);
    let found = ports.iter().find(|p| str_at(&p["name"]) == name);
    found.unwrap_or_else(|| panic!("Service {} has no port {name}", name_of(service)))
}

pub fn envoy_config() -> Yaml {
    parse_file(Path::new(ENVOY_CONFIG)).remove(0)
}

pub fn named<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    let found = items(list)
        .iter()
        .find(|item| str_at(&item["name"]) == name);
    found.unwrap_or_else(|| panic!("no entry named {name}"))
}

/// (host, port) of a static cluster's first endpoint in the Envoy config.
pub fn cluster_endpoint(envoy: &Yaml, cluster: &str) -> (String, i64) {
    let cluster = named(&envoy["static_resources"]["clusters"], cluster);
    let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
    let socket = &endpoint["address"]["socket_address"];
    (
        str_at(&socket["address"]).to_owned(),
        int_at(&socket["port_value"], "port_value"),
    )
}

pub fn listener_port(envoy: &Yaml, listener: &str) -> i64 {
    let listener = named(&envoy["static_resources"]["listeners"], listener);
    int_at(
        &listener["address"]["socket_address"]["port_value"],
        "listener port",
    )
}

/// The mount of the volume that projects the named ConfigMap, as (mountPath, mount).
pub fn configmap_mount<'a>(deployment: &'a Yaml, container: &'a Yaml, configmap: &str) -> &'a Yaml {
    let volumes = items(&deployment["spec"]["template"]["spec"]["volumes"]);
    let volume = volumes
        .iter()
        .find(|v| str_at(&v["configMap"]["name"]) == configmap);
    let volume = volume.unwrap_or_else(|| panic!("no volume for ConfigMap {configmap}"));
    let mounts = items(&container["volumeMounts"]);
    let mount = mounts.iter().find(|m| m["name"] == volume["name"]);
    mount.unwrap_or_else(|| panic!("volume for ConfigMap {configmap} is not mounted"))
}
