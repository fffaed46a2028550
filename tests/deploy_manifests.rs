//! The Kubernetes manifests parse, validate against the Kubernetes schemas, and agree with each
//! other and with the Envoy config: every flag path is a mounted file, every port the Envoy
//! config dials is a port the Service and container expose.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::manifests::*;

#[test]
fn every_manifest_parses_and_names_a_kubernetes_object() {
    let docs = objects();
    assert!(
        docs.len() >= 8,
        "expected the full set of manifests, found {}",
        docs.len()
    );
    for doc in &docs {
        assert!(
            !str_at(&doc.yaml["apiVersion"]).is_empty(),
            "{}: no apiVersion",
            doc.file
        );
        assert!(
            !str_at(&doc.yaml["kind"]).is_empty(),
            "{}: no kind",
            doc.file
        );
        assert!(
            !name_of(&doc.yaml).is_empty(),
            "{}: no metadata.name",
            doc.file
        );
    }
}

#[test]
fn kustomization_lists_exactly_the_manifests() {
    let kustomization = parse_file(&Path::new(K8S_DIR).join("kustomization.yaml")).remove(0);
    assert_eq!(str_at(&kustomization["kind"]), "Kustomization");
    let listed: BTreeSet<&str> = items(&kustomization["resources"])
        .iter()
        .map(str_at)
        .collect();
    let files = manifest_files();
    let present: BTreeSet<&str> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization resources vs files in deploy/kubernetes"
    );
}

#[test]
fn envoy_configmap_is_byte_identical_to_the_deploy_config() {
    let docs = objects();
    let configmap = find(&docs, "ConfigMap", "agents-gateway-envoy");
    let embedded = str_at(&configmap["data"]["envoy.yaml"]);
    let source = std::fs::read_to_string(ENVOY_CONFIG).expect("read envoy.yaml");
    assert!(
        embedded == source,
        "deploy/kubernetes/envoy-configmap.yaml is stale: run scripts/sync-envoy-configmap.sh"
    );
}

#[test]
fn authz_flags_agree_with_mounts_ports_and_secrets() {
    let docs = objects();
    let deployment = find(&docs, "Deployment", "agents-authz");
    let authz = container(deployment, "agents-authz");
    let args = args(authz);
    assert_eq!(args.first(), Some(&"serve"), "the container runs `serve`");

    let grpc = port_of(flag(&args, "--grpc-addr"));
    let http = port_of(flag(&args, "--http-addr"));
    assert_eq!(
        container_port(authz, "grpc"),
        grpc,
        "grpc containerPort vs --grpc-addr"
    );
    assert_eq!(
        container_port(authz, "http"),
        http,
        "http containerPort vs --http-addr"
    );
    let admin = port_of(flag(&args, "--admin-addr"));
    assert_eq!(
        container_port(authz, "admin"),
        admin,
        "admin containerPort vs --admin-addr"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = int_at(&authz[probe]["grpc"]["port"], probe);
        assert_eq!(port, grpc, "{probe} must be a gRPC probe on the gRPC port");
    }

    let keys_file = Path::new(flag(&args, "--managed-keys"));
    let mount = configmap_mount(deployment, authz, "agents-authz-managed-keys");
    let mount_dir = Path::new(str_at(&mount["mountPath"]));
    assert_eq!(
        keys_file.parent(),
        Some(mount_dir),
        "--managed-keys is inside the mount"
    );
    assert!(
        mount["subPath"].is_badvalue(),
        "a subPath mount never sees ConfigMap updates"
    );
    assert_eq!(
        mount["readOnly"].as_bool(),
        Some(true),
        "managed keys mounted read-only"
    );
    let configmap = find(&docs, "ConfigMap", "agents-authz-managed-keys");
    let file_name = keys_file
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let json = str_at(&configmap["data"][file_name]);
    let keys: serde_json::Value = serde_json::from_str(json).expect("managed keys are JSON");
    assert!(
        keys["credentials"].is_array(),
        "managed keys hold a credentials list"
    );

    let secret = find(&docs, "Secret", "agents-authz-credentials");
    for var in ["PLUGIN_AGENTS_API_CREDENTIALS", "PLUGIN_AGENTS_API_TOKEN"] {
        let env = named(&authz["env"], var);
        let reference = &env["valueFrom"]["secretKeyRef"];
        assert_eq!(
            str_at(&reference["name"]),
            name_of(secret),
            "{var} secret name"
        );
        assert_eq!(str_at(&reference["key"]), var, "{var} secret key");
        assert!(
            !secret["stringData"][var].is_badvalue(),
            "Secret has no key {var}"
        );
    }
}

#[test]
fn envoy_dials_the_ports_the_authz_service_exposes() {
    let docs = objects();
    let envoy = envoy_config();
    let service = find(&docs, "Service", "agents-authz");
    assert_eq!(
        str_at(&service["spec"]["clusterIP"]),
        "None",
        "headless for STRICT_DNS"
    );
    let deployment = find(&docs, "Deployment", "agents-authz");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = service["spec"]["selector"].as_hash().expect("selector");
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[str_at(key)],
            value,
            "Service selector vs pod labels"
        );
    }
    let authz = container(deployment, "agents-authz");
    for (cluster, port_name) in [("agents_authz_grpc", "grpc"), ("agents_authz_http", "http")] {
        let (host, port) = cluster_endpoint(&envoy, cluster);
        assert_eq!(host, name_of(service), "{cluster} host vs Service name");
        let service_port = service_port(service, port_name);
        assert_eq!(
            int_at(&service_port["port"], port_name),
            port,
            "{cluster} vs Service port"
        );
        assert_eq!(str_at(&service_port["targetPort"]), port_name);
        assert_eq!(
            container_port(authz, port_name),
            port,
            "{cluster} vs containerPort"
        );
    }
    let (api_host, _) = cluster_endpoint(&envoy, "agents_api");
    assert_eq!(
        api_host, "agents-api",
        "the upstream Service name the README documents"
    );
}

#[test]
fn gateway_mounts_its_config_and_exposes_the_envoy_listeners() {
    let docs = objects();
    let envoy = envoy_config();
    let deployment = find(&docs, "Deployment", "agents-gateway");
    let gateway = container(deployment, "envoy");
    let config_path = Path::new(flag(&args(gateway), "-c"));
    let mount = configmap_mount(deployment, gateway, "agents-gateway-envoy");
    assert_eq!(
        config_path.parent(),
        Some(Path::new(str_at(&mount["mountPath"])))
    );
    let configmap = find(&docs, "ConfigMap", "agents-gateway-envoy");
    let file_name = config_path
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    assert!(
        !configmap["data"][file_name].is_badvalue(),
        "ConfigMap has no {file_name}"
    );

    assert_eq!(
        container_port(gateway, "http"),
        listener_port(&envoy, "agents_edge")
    );
    assert_eq!(
        container_port(gateway, "probes"),
        listener_port(&envoy, "probes")
    );
    let probes = named(&envoy["static_resources"]["listeners"], "probes");
    let manager = &probes["filter_chains"][0]["filters"][0]["typed_config"];
    let health = named(&manager["http_filters"], "envoy.filters.http.health_check");
    let path = str_at(&health["typed_config"]["headers"][0]["string_match"]["exact"]);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            str_at(&gateway[probe]["httpGet"]["path"]),
            path,
            "{probe} path"
        );
        assert_eq!(
            str_at(&gateway[probe]["httpGet"]["port"]),
            "probes",
            "{probe} port"
        );
    }
    let service = find(&docs, "Service", "agents-gateway");
    assert_eq!(str_at(&service_port(service, "http")["targetPort"]), "http");
    let policy = str_at(&service["spec"]["externalTrafficPolicy"]);
    assert_eq!(
        policy, "Local",
        "keep client IPs for the per-key allowlists"
    );
}

#[test]
fn pods_run_non_root_read_only_with_resources() {
    let docs = objects();
    for (name, container_name) in [
        ("agents-authz", "agents-authz"),
        ("agents-gateway", "envoy"),
    ] {
        let deployment = find(&docs, "Deployment", name);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{name}"
        );
        assert!(
            int_at(&pod["securityContext"]["runAsUser"], name) > 0,
            "{name} uid"
        );
        let container = container(deployment, container_name);
        let security = &container["securityContext"];
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}"
        );
        let dropped: Vec<&str> = items(&security["capabilities"]["drop"])
            .iter()
            .map(str_at)
            .collect();
        assert_eq!(dropped, ["ALL"], "{name} drops all capabilities");
        let resources = &container["resources"];
        assert!(
            !resources["requests"]["cpu"].is_badvalue(),
            "{name} cpu request"
        );
        assert!(
            !resources["requests"]["memory"].is_badvalue(),
            "{name} memory request"
        );
        assert!(
            !resources["limits"]["memory"].is_badvalue(),
            "{name} memory limit"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_exposes_the_service_ports() {
    let dockerfile = std::fs::read_to_string(Path::new(K8S_DIR).join("Dockerfile"))
        .expect("read deploy/kubernetes/Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let stages = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(
        stages >= 2,
        "multi-stage build expected, found {stages} FROM"
    );
    let last_stage = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let user = lines[last_stage..]
        .iter()
        .find_map(|l| l.strip_prefix("USER "));
    let user = user.expect("the final stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user} is root"
    );

    let docs = objects();
    let authz = container(find(&docs, "Deployment", "agents-authz"), "agents-authz");
    let exposed = lines
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    let exposed: Vec<i64> = exposed
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for port in ["grpc", "http"] {
        assert!(
            exposed.contains(&container_port(authz, port)),
            "EXPOSE lacks the {port} port"
        );
    }
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let Some(validator) = std::env::var_os("KUBERNETES_VALIDATE_BIN") else {
        panic!(
            "KUBERNETES_VALIDATE_BIN is not set. Run the suite with `bash scripts/test.sh`, which \
             installs kubernetes-validate into .venv"
        );
    };
    let files: Vec<PathBuf> = manifest_files()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|f| f != "kustomization.yaml"))
        .collect();
    let output = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", validator.to_string_lossy()));
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn authz_container_flags_are_ones_the_binary_accepts() {
    let output = Command::new(env!("CARGO_BIN_EXE_agents-authz"))
        .args(["serve", "--help"])
        .output()
        .expect("run agents-authz serve --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "serve --help failed:\n{help}");
    let docs = objects();
    let authz = container(find(&docs, "Deployment", "agents-authz"), "agents-authz");
    let dockerfile = std::fs::read_to_string(Path::new(K8S_DIR).join("Dockerfile"))
        .expect("read deploy/kubernetes/Dockerfile");
    let mut flags: Vec<String> = args(authz).iter().map(|a| (*a).to_owned()).collect();
    flags.extend(dockerfile.split('"').map(str::to_owned));
    for flag in flags.iter().filter(|a| a.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or_default();
        let listed = help
            .split(|c: char| c.is_whitespace() || c == ',')
            .any(|w| w == name);
        assert!(
            listed,
            "`{name}` is not a flag of `agents-authz serve`:\n{help}"
        );
    }
}

#[test]
fn the_gateway_never_routes_to_the_admin_port_and_only_it_reaches_authz() {
    let docs = objects();
    let envoy = envoy_config();
    let authz = container(find(&docs, "Deployment", "agents-authz"), "agents-authz");
    let admin = container_port(authz, "admin");
    for cluster in items(&envoy["static_resources"]["clusters"]) {
        let name = str_at(&cluster["name"]);
        let (_, port) = cluster_endpoint(&envoy, name);
        assert_ne!(port, admin, "Envoy cluster {name} points at the admin port");
    }
    let policy = find(&docs, "NetworkPolicy", "agents-authz-from-gateway");
    let rules = items(&policy["spec"]["ingress"]);
    let gateway_rule = rules.iter().find(|rule| {
        let from = &rule["from"][0]["podSelector"]["matchLabels"];
        str_at(&from["app.kubernetes.io/name"]) == "agents-gateway"
    });
    let gateway_rule = gateway_rule.expect("an ingress rule for the gateway pods");
    let ports: Vec<i64> = items(&gateway_rule["ports"])
        .iter()
        .map(|p| int_at(&p["port"], "port"))
        .collect();
    for name in ["grpc", "http"] {
        let port = container_port(authz, name);
        assert!(
            ports.contains(&port),
            "the gateway may not reach the {name} port {port}"
        );
    }
    assert!(!ports.contains(&admin), "the gateway needs no admin access");
}

#[test]
fn authz_drains_for_longer_than_envoy_takes_to_notice() {
    let docs = objects();
    let envoy = envoy_config();
    let deployment = find(&docs, "Deployment", "agents-authz");
    let args = args(container(deployment, "agents-authz"));
    let delay_ms: i64 = flag(&args, "--shutdown-delay-ms")
        .parse()
        .expect("delay in ms");
    let grace_s: i64 = flag(&args, "--shutdown-grace-seconds")
        .parse()
        .expect("grace in s");
    let cluster = named(&envoy["static_resources"]["clusters"], "agents_authz_grpc");
    let check = &cluster["health_checks"][0];
    let interval = str_at(&check["interval"]).trim_end_matches('s');
    let interval_s: i64 = interval
        .parse()
        .expect("health check interval in whole seconds");
    let threshold = int_at(&check["unhealthy_threshold"], "unhealthy_threshold");
    assert!(
        delay_ms >= interval_s * threshold * 1000,
        "--shutdown-delay-ms {delay_ms} is shorter than Envoy's {interval_s}s x {threshold} to notice"
    );
    let termination = int_at(
        &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    assert!(
        termination * 1000 > delay_ms + grace_s * 1000,
        "termination grace too short"
    );
}
