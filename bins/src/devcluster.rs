//! `kraken devcluster`: the whole cluster on 127.0.0.1 in this process,
//! on the documented local ports, over a filesystem backend under the data
//! directory, until interrupted.

use std::sync::Arc;

use anyhow::Context;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_registry::cluster::{Cluster, ClusterOptions};

use crate::cli::DevclusterArgs;

/// Starts the cluster, prints what runs where and what to try, and stops
/// it on SIGINT or SIGTERM.
///
/// # Errors
///
/// When a component cannot start (a port already in use, a data directory
/// another process holds).
pub async fn run(args: DevclusterArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log)?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("data directory {}", args.data_dir.display()))?;
    let backend = FsBackend::open(FsBackendOptions {
        root: data_dir.join("backend"),
    })
    .await
    .with_context(|| format!("filesystem backend under {}", data_dir.display()))?;
    let options = ClusterOptions {
        origins: usize::from(args.origins),
        agents: usize::from(args.agents),
        ..ClusterOptions::local(&data_dir)
    };
    let cluster = Cluster::start(options, Arc::new(backend))
        .await
        .context("the local cluster did not start (is another devcluster running?)")?;
    print!("{}", banner(&cluster, &data_dir));
    crate::shutdown_signal().await;
    cluster.shutdown().await;
    println!("stopped; state kept in {}", data_dir.display());
    Ok(())
}

/// What runs where, and commands to try against it.
fn banner(cluster: &Cluster, data_dir: &std::path::Path) -> String {
    let mut text = String::from("kraken devcluster is running:\n\n");
    for (what, addr) in cluster.describe() {
        text.push_str(&format!("  {what:<28} {addr}\n"));
    }
    let proxy = cluster.proxy_addr();
    let agent = cluster
        .agents()
        .first()
        .map(|a| a.registry_addr().to_string())
        .unwrap_or_else(|| "127.0.0.1:16000".into());
    let origin = cluster.origins()[0].origin.addr().to_owned();
    let api = cluster
        .agents()
        .first()
        .map(|a| a.api_addr().to_string())
        .unwrap_or_else(|| "127.0.0.1:16002".into());
    text.push_str(&format!(
        "
State: {data}

Push an image to the proxy, pull it from an agent:
  skopeo copy --dest-tls-verify=false oci:IMAGE_DIR:TAG docker://{proxy}/demo/app:v1
  skopeo copy --src-tls-verify=false docker://{agent}/demo/app:v1 dir:/tmp/app
  podman pull --tls-verify=false {agent}/demo/app:v1
  ctr images pull --plain-http {agent}/demo/app:v1

Generic blobs:
  kraken blob push --origin {origin} FILE          # prints the digest
  kraken blob pull --agent {api} DIGEST -o OUT

Metrics: curl http://{proxy}/metrics    Stop: Ctrl-C
",
        data = data_dir.display(),
    ));
    text
}
