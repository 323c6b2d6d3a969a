//! A simulated agent: what the real agent (`crates/agent`) does on the wire, without its state
//! file or collectors. Enroll, send a full report, check in, and the cycle the real agent runs
//! when its push channel wakes it: check in, send a full report per resync instruction with
//! the instruction ids in `answers` (zstd-compressed, as the agent sends reports), acknowledge
//! events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use invsync_proto::wire::{
    self, AckRequest, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse,
    InstructionKind, Report, ReportAck,
};
use invsync_proto::{Class, ClientName};

use crate::http::{Conn, Request};
use crate::inventory;

/// One enrolled simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    /// Its number: `LG00001` is 1. Also the seed of its synthetic inventory.
    pub index: usize,
    pub name: ClientName,
    /// The client token (`<client id>.<key hex>`), presented as `Authorization: Bearer …`.
    pub token: String,
}

/// `<prefix><index, 5 digits or more>`, e.g. `LG00001`.
pub fn agent_name(prefix: &str, index: usize) -> Result<ClientName> {
    let raw = format!("{prefix}{index:05}");
    ClientName::parse(&raw).with_context(|| format!("simulated agent name {raw:?} (from --prefix)"))
}

/// A random machine id: 32 hex digits, like `/etc/machine-id`.
pub fn random_machine_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `POST /cap/v1/enroll`.
pub async fn enroll(
    conn: &mut Conn,
    secret: &str,
    index: usize,
    name: ClientName,
    timeout: Duration,
) -> Result<SimAgent> {
    let req = EnrollRequest {
        secret: secret.to_string(),
        name: name.clone(),
        machine_id: random_machine_id(),
        hardware: None,
    };
    let body = serde_json::to_vec(&req)?;
    let resp = conn
        .call(&Request::post(wire::CAP_ENROLL, None, &body), timeout)
        .await?;
    let enrolled: EnrollResponse = resp.json(&format!("enrolling {name}"))?;
    if enrolled.reenrolled {
        bail!(
            "{name} was enrolled at this site before; start a fresh site or give another --prefix"
        );
    }
    Ok(SimAgent {
        index,
        name,
        token: enrolled.token,
    })
}

impl SimAgent {
    /// `POST /cap/v1/checkin`.
    pub async fn checkin(&self, conn: &mut Conn, timeout: Duration) -> Result<CheckinResponse> {
        let req = CheckinRequest {
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        };
        let body = serde_json::to_vec(&req)?;
        let resp = conn
            .call(
                &Request::post(wire::CAP_CHECKIN, Some(&self.token), &body),
                timeout,
            )
            .await?;
        resp.json(&format!("check-in of {}", self.name))
    }

    /// `POST /cap/v1/report`, zstd-compressed; an error unless the site accepted it.
    pub async fn report(
        &self,
        conn: &mut Conn,
        report: &Report,
        timeout: Duration,
    ) -> Result<ReportAck> {
        let json = serde_json::to_vec(report)?;
        let packed = zstd::bulk::compress(&json, 3).context("compressing a report")?;
        let req = Request {
            zstd: true,
            ..Request::post(wire::CAP_REPORT, Some(&self.token), &packed)
        };
        let resp = conn.call(&req, timeout).await?;
        let ack: ReportAck = resp.json(&format!("{} report of {}", report.class, self.name))?;
        match &ack {
            ReportAck::Accepted { .. } => Ok(ack),
            other => bail!(
                "the site did not accept the {} report of {}: {other:?}",
                report.class,
                self.name
            ),
        }
    }

    /// A full report of this agent's synthetic inventory of `class`.
    pub async fn send_full(
        &self,
        conn: &mut Conn,
        class: Class,
        sw_count: usize,
        answers: Vec<i64>,
        timeout: Duration,
    ) -> Result<ReportAck> {
        let report = inventory::full_report(
            class,
            inventory::items(class, self.index, sw_count),
            answers,
        );
        self.report(conn, &report, timeout).await
    }

    /// `POST /cap/v1/ack`.
    pub async fn ack(&self, conn: &mut Conn, done: Vec<i64>, timeout: Duration) -> Result<()> {
        let body = serde_json::to_vec(&AckRequest { done })?;
        let resp = conn
            .call(
                &Request::post(wire::CAP_ACK, Some(&self.token), &body),
                timeout,
            )
            .await?;
        if !(200..300).contains(&resp.status) {
            let _: serde::de::IgnoredAny =
                resp.json(&format!("acknowledgement of {}", self.name))?;
        }
        Ok(())
    }

    /// What the real agent does when its push channel says `wake: true`: one cycle on a new
    /// connection. Returns the resync instructions its reports answered and when the site
    /// acknowledged the last of them.
    pub async fn woken_cycle(
        &self,
        addr: SocketAddr,
        sw_count: usize,
        timeout: Duration,
    ) -> Result<Cycle> {
        let mut conn = Conn::connect_timeout(addr, timeout).await?;
        let checkin = self.checkin(&mut conn, timeout).await?;
        let mut answered = Vec::new();
        let mut events = Vec::new();
        let mut acknowledged_at = None;
        for class in Class::ALL {
            let ids: Vec<i64> = checkin
                .instructions
                .iter()
                .filter(|i| matches!(i.kind, InstructionKind::Resync { class: c } if c == class))
                .map(|i| i.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            self.send_full(&mut conn, class, sw_count, ids.clone(), timeout)
                .await?;
            acknowledged_at = Some(Instant::now());
            answered.extend(ids);
        }
        for i in &checkin.instructions {
            if let InstructionKind::Event { .. } = i.kind {
                events.push(i.id);
            }
        }
        if !events.is_empty() {
            self.ack(&mut conn, events, timeout).await?;
        }
        Ok(Cycle {
            answered,
            acknowledged_at,
        })
    }

    /// The body of a push-channel long-poll (`POST /cap/v1/wait`), as the agent sends it.
    pub fn wait_request(&self) -> Request<'_> {
        Request::post(wire::CAP_WAIT, Some(&self.token), b"{}")
    }
}

/// The outcome of a woken cycle.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Ids of the resync instructions answered by accepted reports.
    pub answered: Vec<i64>,
    /// When the site accepted the last report (`None`: there was nothing to report).
    pub acknowledged_at: Option<Instant>,
}
