//! The same image API through bollard, a typed Rust client: its strict
//! models catch missing or mistyped fields the CLI would shrug off.

mod common;

use std::collections::HashMap;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use common::{registry, TestDaemon};
use futures::StreamExt;

fn reg(name: &str) -> String {
    format!("{}/{name}", registry())
}

/// Pulls `name:latest` with bollard; returns every status line.
async fn pull(docker: &bollard::Docker, name: &str) -> Vec<String> {
    let opts = CreateImageOptionsBuilder::new()
        .from_image(name)
        .tag("latest")
        .build();
    let mut stream = docker.create_image(Some(opts), None, None);
    let mut statuses = vec![];
    while let Some(msg) = stream.next().await {
        let msg = msg.unwrap_or_else(|e| panic!("pull {name}: {e}; so far {statuses:?}"));
        statuses.push(msg.status.unwrap_or_default());
    }
    statuses
}

#[tokio::test]
async fn version_info_and_ping() {
    let d = TestDaemon::start();
    let docker = d.bollard();
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let v = docker.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some("1.47"));
    assert_eq!(v.min_api_version.as_deref(), Some("1.24"));
    assert_eq!(v.os.as_deref(), Some("linux"));
    assert_eq!(v.arch.as_deref(), Some(common::host_arch()));
    let info = docker.info().await.unwrap();
    assert_eq!(info.images, Some(0));
    assert_eq!(info.driver.as_deref(), Some("overlay2"));
    assert_eq!(
        info.docker_root_dir.as_deref(),
        Some(d.data_root().to_str().unwrap())
    );
    let mirrors = info
        .registry_config
        .and_then(|r| r.mirrors)
        .unwrap_or_default();
    assert!(
        mirrors
            .iter()
            .any(|m| m.starts_with(&format!("http://{}", registry()))),
        "{mirrors:?}"
    );

    // A client that starts newer than us negotiates down to 1.47.
    let newer = bollard::Docker::connect_with_unix(
        &d.socket().display().to_string(),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
    .negotiate_version()
    .await
    .unwrap();
    let cv = newer.client_version();
    assert_eq!((cv.major_version, cv.minor_version), (1, 47));
    newer.version().await.unwrap();
}

#[tokio::test]
async fn pull_list_inspect_tag_remove() {
    let d = TestDaemon::start();
    let docker = d.bollard();
    let name = reg("layers");

    let statuses = pull(&docker, &name).await;
    assert_eq!(
        statuses.iter().filter(|s| *s == "Pull complete").count(),
        4,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("Digest: sha256:")),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().unwrap(),
        &format!("Status: Downloaded newer image for {name}:latest")
    );
    pull(&docker, &reg("busybox")).await;

    let all = docker
        .list_images(Some(ListImagesOptionsBuilder::new().build()))
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    let layers = all
        .iter()
        .find(|i| i.repo_tags == vec![format!("{name}:latest")])
        .unwrap_or_else(|| panic!("{name} not listed: {all:#?}"));
    assert_eq!(
        layers.labels.get("test.layers").map(String::as_str),
        Some("yes")
    );
    assert!(layers.size > 1 << 20);
    assert_eq!(layers.repo_digests.len(), 1);
    assert_eq!(layers.created, 1_767_225_600);

    let mut filters = HashMap::new();
    filters.insert("label", vec!["test.layers=yes"]);
    let filtered = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, layers.id);

    let inspect = docker.inspect_image(&name).await.unwrap();
    assert_eq!(inspect.id.as_deref(), Some(layers.id.as_str()));
    assert_eq!(inspect.repo_tags, Some(vec![format!("{name}:latest")]));
    let rootfs = inspect.root_fs.unwrap();
    assert_eq!(rootfs.typ, "layers");
    assert_eq!(rootfs.layers.unwrap().len(), 4);
    assert_eq!(inspect.graph_driver.unwrap().name, "overlay2");
    assert_eq!(inspect.config.unwrap().cmd, Some(vec!["sh".to_string()]));

    docker
        .tag_image(
            &name,
            Some(
                TagImageOptionsBuilder::new()
                    .repo("bollard/tagged")
                    .tag("v2")
                    .build(),
            ),
        )
        .await
        .unwrap();
    let tagged = docker.inspect_image("bollard/tagged:v2").await.unwrap();
    assert_eq!(tagged.id, Some(layers.id.clone()));

    // Untag one name, then remove the image for good.
    let removed = docker
        .remove_image(
            "bollard/tagged:v2",
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].untagged.as_deref(), Some("bollard/tagged:v2"));
    let removed = docker
        .remove_image(
            &name,
            Some(RemoveImageOptionsBuilder::new().force(false).build()),
            None,
        )
        .await
        .unwrap();
    assert!(
        removed
            .iter()
            .any(|r| r.deleted.as_deref() == Some(layers.id.as_str())),
        "{removed:?}"
    );
    assert!(removed.iter().any(|r| r.untagged.is_some()), "{removed:?}");
    let err = docker.inspect_image(&name).await.unwrap_err();
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
            assert_eq!(status_code, 404)
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(
        docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn events_with_filters() {
    let d = TestDaemon::start();
    let docker = d.bollard();
    let name = reg("busybox");
    let t0 = common::unix_now();
    pull(&docker, &name).await;
    docker
        .tag_image(
            &name,
            Some(TagImageOptionsBuilder::new().repo("ev").tag("1").build()),
        )
        .await
        .unwrap();
    let id = docker.inspect_image(&name).await.unwrap().id.unwrap();
    let until = (common::unix_now() + 1).to_string();

    let mut filters = HashMap::new();
    filters.insert("type", vec!["image"]);
    filters.insert("event", vec!["tag", "pull"]);
    let opts = EventsOptionsBuilder::new()
        .since(&t0.to_string())
        .until(&until)
        .filters(&filters)
        .build();
    let events: Vec<_> = docker
        .events(Some(opts))
        .map(|e| e.expect("event"))
        .collect()
        .await;
    let actions: Vec<String> = events.iter().filter_map(|e| e.action.clone()).collect();
    assert_eq!(actions, vec!["pull", "tag"], "{events:#?}");
    let pull_ev = &events[0];
    assert_eq!(
        pull_ev.actor.as_ref().and_then(|a| a.id.clone()),
        Some(format!("{name}:latest"))
    );
    let tag_ev = &events[1];
    let actor = tag_ev.actor.as_ref().unwrap();
    assert_eq!(actor.id.as_deref(), Some(id.as_str()));
    assert_eq!(
        actor
            .attributes
            .as_ref()
            .and_then(|a| a.get("name"))
            .map(String::as_str),
        Some("ev:1")
    );
    assert!(tag_ev.time_nano.unwrap_or(0) >= tag_ev.time.unwrap_or(0) * 1_000_000_000);

    // A live stream delivers an event as it happens.
    let mut live_filters = HashMap::new();
    live_filters.insert("event", vec!["untag"]);
    let live = docker.events(Some(
        EventsOptionsBuilder::new().filters(&live_filters).build(),
    ));
    // Streams are lazy: poll it in a task so the subscription is in place
    // before the image is untagged.
    let first = tokio::spawn(async move {
        let mut live = Box::pin(live);
        live.next().await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    docker
        .remove_image(
            "ev:1",
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), first)
        .await
        .expect("no live untag event within 10 s")
        .expect("event task")
        .expect("stream ended")
        .expect("event error");
    assert_eq!(ev.action.as_deref(), Some("untag"));
}
