//! The in-cluster client: the convention's discovery, the Pod reads and
//! the Event poster.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::endpoints::{PodEndpoints, WatchLine};
use super::https::{ApiServer, RequestError};
use super::objects::{event_body, pod_facts, status_message, PodFacts, PodRef};
use crate::cli::Settings;
use crate::durations::secs;
use crate::lifecycle::{EndpointNews, Event, Trigger};
use crate::settings::KubernetesApi;

/// The longest the first read of the Pod may delay the app's start.
pub const START_READ: Duration = Duration::from_secs(1);
/// How long the Pod read at a drain's start may take; a late answer is
/// dropped (the drain goes on by `--grace-period`).
const DRAIN_READ: Duration = Duration::from_secs(3);
/// How long one Event post may take.
const EVENT_POST: Duration = Duration::from_secs(2);
/// Events waiting to be posted; more are dropped (rate limit).
const EVENT_QUEUE: usize = 4;
/// How long drainit's exit waits for Events still being posted.
const EVENT_FLUSH: Duration = Duration::from_secs(1);
/// How long a list of EndpointSlices, or a watch's first answer, may take.
const LIST_TIME: Duration = Duration::from_secs(5);
/// How long the server keeps one watch open (`timeoutSeconds`).
const WATCH_SECONDS: u32 = 60;
/// Relists (410 Gone) before the watch gives up.
const MAX_RELISTS: u32 = 5;
/// Watches (each ended by the server) before the watch gives up.
const MAX_WATCHES: u32 = 50;
/// The longest watch line drainit reads (one EndpointSlice: ≤ 1 000 endpoints).
const MAX_LINE: usize = 4 << 20;

/// The API client the event loop owns once the first Pod read succeeded.
pub struct Kube {
    api: Arc<Api>,
    machine: mpsc::Sender<Event>,
    events: mpsc::Sender<String>,
    poster: JoinHandle<()>,
    watch: Option<JoinHandle<()>>,
}

/// The server and the pod it is asked about.
struct Api {
    server: ApiServer,
    pod: PodRef,
}

/// Why a Pod read gave no facts.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("GET {path} answered {status} ({message})")]
    Refused {
        path: String,
        status: u16,
        message: String,
    },
    #[error("GET {path}: {why}")]
    NotAPod { path: String, why: String },
}

impl Api {
    fn pod_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/pods/{}",
            self.pod.namespace, self.pod.name
        )
    }

    async fn read_pod(&self) -> Result<PodFacts, ReadError> {
        let path = self.pod_path();
        let answer = self.server.request(Method::GET, &path, None).await?;
        if answer.status != 200 {
            return Err(ReadError::Refused {
                path,
                status: answer.status,
                message: status_message(&answer.body),
            });
        }
        pod_facts(&answer.body).map_err(|why| ReadError::NotAPod { path, why })
    }
}

/// Finds the API by the in-cluster convention, reads the Pod once (at
/// most [`START_READ`]) and applies its grace to `settings`; `None` (with
/// one line saying why) when the API is not to be used.
pub async fn start(settings: &mut Settings, machine: mpsc::Sender<Event>) -> Option<Kube> {
    if settings.kubernetes == KubernetesApi::Off {
        debug!("--kubernetes off: the Kubernetes API is not used");
        return None;
    }
    let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") else {
        debug!("KUBERNETES_SERVICE_HOST is not set: not in a Kubernetes pod, the API is not used");
        return None;
    };
    const BEHAVES: &str =
        "drainit goes on without the Kubernetes API (--grace-period as set, no Events)";
    let mut api = match discover(settings, &host) {
        Ok(api) => api,
        Err(missing) => {
            warn!("{missing}; {BEHAVES}");
            return None;
        }
    };
    let facts = match timeout(START_READ, api.read_pod()).await {
        Ok(Ok(facts)) => facts,
        Ok(Err(error)) => {
            let hint = match &error {
                ReadError::Refused { status: 401, .. } => {
                    " (the service account's token was refused)"
                }
                ReadError::Refused { status: 403, .. } => {
                    " (the service account needs the Role in examples/kubernetes/rbac.yaml)"
                }
                _ => "",
            };
            warn!("Kubernetes API: {error}{hint}; {BEHAVES}");
            return None;
        }
        Err(_) => {
            warn!(
                "Kubernetes API: GET {} did not answer within {}; {BEHAVES}",
                api.pod_path(),
                secs(START_READ)
            );
            return None;
        }
    };
    api.pod.uid = facts.uid.clone();
    apply_pod_grace(settings, &facts);
    info!(
        pod = %format!("{}/{}", api.pod.namespace, api.pod.name),
        "Kubernetes API in use: deletion deadlines and an Event per drain"
    );
    let api = Arc::new(api);
    let (events, queue) = mpsc::channel(EVENT_QUEUE);
    let poster = tokio::spawn(post_events(api.clone(), queue));
    Some(Kube {
        api,
        machine,
        events,
        poster,
        watch: None,
    })
}

/// The pod's `terminationGracePeriodSeconds` as the default grace period.
fn apply_pod_grace(settings: &mut Settings, facts: &PodFacts) {
    let Some(grace) = facts.termination_grace else {
        return;
    };
    if !settings.grace_period_set {
        settings.grace_period = grace;
        info!(grace_period = %secs(grace), "grace period from the pod's terminationGracePeriodSeconds");
    } else if settings.grace_period != grace {
        warn!(
            "--grace-period {} differs from the pod's terminationGracePeriodSeconds {}: the kubelet kills by the pod's",
            secs(settings.grace_period),
            secs(grace)
        );
    }
}

/// The in-cluster convention: the service's address from the
/// environment, the token and CA from the service account's directory,
/// the pod's name and namespace from the downward API or the defaults.
fn discover(settings: &Settings, host: &str) -> Result<Api, String> {
    let dir = settings.kubernetes_secrets.as_path();
    let port = match std::env::var("KUBERNETES_SERVICE_PORT") {
        Ok(port) => port
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("KUBERNETES_SERVICE_PORT {port:?} is not a port"))?,
        Err(_) => 443,
    };
    let token_file = dir.join("token");
    if !token_file.is_file() {
        return Err(format!(
            "no service account token at {} (automountServiceAccountToken: false?)",
            token_file.display()
        ));
    }
    let server = ApiServer::new(host, port, dir.join("ca.crt"), token_file)
        .map_err(|error| error.to_string())?;
    let name = match &settings.pod_name {
        Some(name) => name.clone(),
        None => std::env::var("HOSTNAME").map_err(|_| {
            "no pod name: set DRAINIT_POD_NAME from the downward API (metadata.name)".to_string()
        })?,
    };
    let namespace = match &settings.pod_namespace {
        Some(namespace) => namespace.clone(),
        None => read_namespace(dir)?,
    };
    Ok(Api {
        server,
        pod: PodRef {
            namespace,
            name,
            uid: None,
        },
    })
}

fn read_namespace(dir: &Path) -> Result<String, String> {
    let file = dir.join("namespace");
    let namespace = std::fs::read_to_string(&file).map_err(|error| {
        format!(
            "no pod namespace: {} ({error}); set DRAINIT_POD_NAMESPACE from the downward API (metadata.namespace)",
            file.display()
        )
    })?;
    Ok(namespace.trim().to_string())
}

impl Kube {
    /// A drain started: read the Pod's deletion for the machine (in the
    /// background, bounded), and post the drain's first Event.
    pub fn drain_started(&mut self, trigger: Trigger, summary: String) {
        let api = self.api.clone();
        let machine = self.machine.clone();
        tokio::spawn(async move {
            match timeout(DRAIN_READ, api.read_pod()).await {
                Ok(Ok(facts)) => {
                    if let Some(at) = &facts.deletion_timestamp {
                        debug!(deletion_timestamp = %at, "the pod is being deleted");
                    }
                    let _ = machine.send(Event::Deletion(facts.deletion)).await;
                }
                Ok(Err(error)) => {
                    info!("Kubernetes API: {error}; the drain keeps its deadline");
                }
                Err(_) => info!(
                    "Kubernetes API: the pod's deletion not read within {}; the drain keeps its deadline",
                    secs(DRAIN_READ)
                ),
            }
        });
        let (api, machine) = (self.api.clone(), self.machine.clone());
        self.watch = Some(tokio::spawn(async move {
            let news = match watch_until_removed(&api).await {
                Ok(()) => EndpointNews::Removed,
                Err(why) if why.contains("answered 403") => {
                    // Something is missing: said once (one watch per run).
                    warn!("Kubernetes API: EndpointSlice watch: {why} (the Role in examples/kubernetes/rbac.yaml lists and watches endpointslices); the endpoint's removal is not awaited");
                    EndpointNews::Unknown
                }
                Err(why) => {
                    info!("Kubernetes API: EndpointSlice watch: {why}; the endpoint's removal is not awaited");
                    EndpointNews::Unknown
                }
            };
            let _ = machine.send(Event::Endpoint(news)).await;
        }));
        self.post(
            "DrainStarted",
            &format!("drain started by {trigger}: {summary}"),
            false,
        );
    }

    /// The drain ended: its last Event, with the figures.
    pub fn drain_ended(&mut self, summary: String, warning: bool) {
        self.post("DrainEnded", &summary, warning);
    }

    fn post(&mut self, reason: &str, message: &str, warning: bool) {
        let now = SystemTime::now();
        let unique = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        let body = event_body(&self.api.pod, reason, message, warning, &stamp, unique);
        if self.events.try_send(body).is_err() {
            debug!(reason, "Kubernetes Event dropped: too many waiting");
        }
    }

    /// drainit is exiting: give the Events still queued a short, bounded
    /// time to be posted.
    pub async fn finish(self) {
        let Kube {
            events,
            poster,
            watch,
            ..
        } = self;
        if let Some(watch) = watch {
            watch.abort();
        }
        drop(events);
        let mut poster = poster;
        if timeout(EVENT_FLUSH, &mut poster).await.is_err() {
            poster.abort();
            debug!("Kubernetes Events still unposted at exit were dropped");
        }
    }
}

/// Posts queued Events one at a time; the first failure is told once.
async fn post_events(api: Arc<Api>, mut queue: mpsc::Receiver<String>) {
    let path = format!("/api/v1/namespaces/{}/events", api.pod.namespace);
    let mut told = false;
    while let Some(body) = queue.recv().await {
        let outcome = match timeout(
            EVENT_POST,
            api.server.request(Method::POST, &path, Some(body)),
        )
        .await
        {
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => Ok(()),
            Ok(Ok(answer)) => Err(format!(
                "POST {path} answered {} ({})",
                answer.status,
                status_message(&answer.body)
            )),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "POST {path} did not answer within {}",
                secs(EVENT_POST)
            )),
        };
        match outcome {
            Ok(()) => debug!("Kubernetes Event posted"),
            Err(why) if !told => {
                told = true;
                warn!("Kubernetes Event not posted: {why}; the drain goes on without Events");
            }
            Err(why) => debug!("Kubernetes Event not posted: {why}"),
        }
    }
}

/// Lists the namespace's EndpointSlices and watches them (bookmarks on;
/// 410 Gone relists) until no slice holds a serving endpoint of this pod.
async fn watch_until_removed(api: &Api) -> Result<(), String> {
    use http_body_util::BodyExt;

    let base = format!(
        "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
        api.pod.namespace
    );
    let mut endpoints = PodEndpoints::new(&api.pod.name);
    let mut watches = 0;
    'relist: for _ in 0..MAX_RELISTS {
        let answer = timeout(LIST_TIME, api.server.request(Method::GET, &base, None))
            .await
            .map_err(|_| format!("GET {base} did not answer within {}", secs(LIST_TIME)))?
            .map_err(|error| error.to_string())?;
        if answer.status != 200 {
            return Err(format!(
                "GET {base} answered {} ({})",
                answer.status,
                status_message(&answer.body)
            ));
        }
        let list: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|error| format!("GET {base}: {error}"))?;
        let mut version = endpoints
            .relist(&list)
            .ok_or_else(|| format!("GET {base}: no resourceVersion"))?;
        while endpoints.serving() {
            watches += 1;
            if watches > MAX_WATCHES {
                return Err("the watch keeps ending".to_string());
            }
            let path = format!(
                "{base}?watch=1&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds={WATCH_SECONDS}"
            );
            let stream = timeout(LIST_TIME, api.server.open(Method::GET, &path, None))
                .await
                .map_err(|_| format!("the watch did not answer within {}", secs(LIST_TIME)))?
                .map_err(|error| error.to_string())?;
            match stream.status {
                200 => {}
                410 => continue 'relist,
                status => return Err(format!("the watch answered {status}")),
            }
            let mut body = stream.body;
            let mut buffer: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|error| format!("the watch broke: {error}"))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buffer.extend_from_slice(data);
                while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match endpoints.read_line(&line) {
                        WatchLine::Expired => {
                            debug!("EndpointSlice watch: 410 Gone, listing again");
                            continue 'relist;
                        }
                        WatchLine::Other(why) => return Err(why),
                        news => {
                            if let Some(newer) = endpoints.apply(news) {
                                version = newer;
                            }
                        }
                    }
                    if !endpoints.serving() {
                        return Ok(());
                    }
                }
                if buffer.len() > MAX_LINE {
                    return Err("a watch line too long".to_string());
                }
            }
            // The server ended the watch (timeoutSeconds): go on from `version`.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Ok(());
    }
    Err("the list keeps expiring (410 Gone)".to_string())
}
