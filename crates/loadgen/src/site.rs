//! The site under load: its address, which must be `http://127.0.0.1:PORT` (a load generator
//! pointed at someone else's server by mistake is a denial of service), and the credentials
//! read from its data directory (`enroll.secret`, `admin.token`), as `invsite` writes them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use invsync_proto::exit::{Code, Exit};

/// Where the site listens and what the load generator presents to it.
#[derive(Debug, Clone)]
pub struct Site {
    pub addr: SocketAddr,
    pub enroll_secret: String,
    pub admin_token: String,
}

impl Site {
    /// Checks the URL and reads the secrets from `data_dir`.
    pub fn load(url: &str, data_dir: &Path) -> Result<Site> {
        let addr = parse_local_url(url)?;
        Ok(Site {
            addr,
            enroll_secret: read_secret(&data_dir.join("enroll.secret"))?,
            admin_token: read_secret(&data_dir.join("admin.token"))?,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Accepts `http://127.0.0.1:PORT` with an optional trailing `/`, nothing else.
pub fn parse_local_url(url: &str) -> Result<SocketAddr, Exit> {
    let refuse = |why: &str| {
        Exit::usage(format!(
            "--site {url:?}: {why}; the load generator only talks to a site on this machine, \
             given as http://127.0.0.1:PORT"
        ))
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| refuse("not an http:// URL"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| refuse("no port"))?;
    if host != "127.0.0.1" {
        return Err(refuse(&format!("host {host:?} is not 127.0.0.1")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| refuse("the port is not a number"))?;
    if port == 0 {
        return Err(refuse("port 0"));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
}

fn read_secret(path: &PathBuf) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| {
            Exit::new(
                Code::NotSiteServer,
                format!(
                    "cannot read {} ({e}); give the site's data directory as --site-dir",
                    path.display()
                ),
            )
        })
        .context("reading the site's credentials")?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(Exit::new(Code::NotSiteServer, format!("{} is empty", path.display())).into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert_eq!(
            parse_local_url("http://127.0.0.1:8350").unwrap().port(),
            8350
        );
        assert_eq!(
            parse_local_url("http://127.0.0.1:8350/").unwrap().port(),
            8350
        );
        for bad in [
            "https://127.0.0.1:8350",
            "http://localhost:8350",
            "http://10.0.0.1:8350",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:x",
            "http://user@127.0.0.1:1",
            "http://127.0.0.1.example.com:1",
        ] {
            assert!(parse_local_url(bad).is_err(), "{bad}");
        }
    }
}
