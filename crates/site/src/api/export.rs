//! Downloads: the software lists as CSV (RFC 4180, written with the `csv` crate) or JSON, as
//! attachments with a safe file name. CSV is written a chunk at a time while the response is
//! sent, not built as one string first, and every cell that a spreadsheet would read as a
//! formula is neutralised (OWASP's advice for CSV injection): a package named
//! `=HYPERLINK("http://evil.example","x")` reaches the spreadsheet as text.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use invsync_proto::wire::{PackagePage, SoftwarePage};

/// About this many bytes of CSV are written before a chunk goes to the connection.
const CHUNK: usize = 32 * 1024;

/// A download named `file` of `content_type`.
pub fn download(file: &str, content_type: &'static str, body: Body) -> Response {
    // The name is the caller's (a package name from the path); keep only characters that are
    // safe inside the quoted file name.
    let file: String = file
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CONTENT_DISPOSITION, disposition);
    resp
}

/// A cell as a spreadsheet may safely read it: one that begins with `=`, `+`, `-`, `@`, a tab
/// or a carriage return would be evaluated as a formula (quoting does not stop that), so it
/// gets a leading `'`, which spreadsheets show as text.
pub fn cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A CSV writer into a buffer; its records end with CRLF (RFC 4180), and fields are quoted
/// when they hold a comma, a quote or a line break.
fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(CHUNK + 1024))
}

/// Writes one record, each cell through [`cell`].
pub fn record(out: &mut csv::Writer<Vec<u8>>, cells: &[&str]) -> csv::Result<()> {
    for c in cells {
        out.write_field(cell(c).as_bytes())?;
    }
    out.write_record(None::<&[u8]>)
}

/// A CSV body: `header`, then `write` for each item, sent in chunks of about [`CHUNK`] bytes.
fn csv_body<T: Send + 'static>(
    header: &'static [&'static str],
    items: Vec<T>,
    write: fn(&mut csv::Writer<Vec<u8>>, &T) -> csv::Result<()>,
) -> Body {
    let mut header = Some(header);
    let mut items = items.into_iter();
    // One writer per chunk: `csv::Writer` hands its buffer back only by being consumed.
    let chunks = std::iter::from_fn(move || {
        let mut out = writer();
        let mut fill = || -> csv::Result<()> {
            if let Some(h) = header.take() {
                record(&mut out, h)?;
            }
            while out.get_ref().len() < CHUNK {
                let Some(item) = items.next() else { break };
                write(&mut out, &item)?;
            }
            Ok(())
        };
        // Writing into memory fails only on a bug (records of different lengths are allowed
        // by nothing here); the connection then ends early instead of the site panicking.
        let chunk = match fill()
            .map_err(std::io::Error::other)
            .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        {
            Ok(chunk) => chunk,
            Err(e) => return Some(Err(e)),
        };
        (!chunk.is_empty()).then(|| Ok(Bytes::from(chunk)))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// The CSV of a page of holders: a header, then one row per client and installed package.
pub fn holders_csv(file: &str, page: SoftwarePage) -> Response {
    const HEADER: &[&str] = &[
        "client",
        "client_id",
        "site",
        "name",
        "version",
        "arch",
        "source",
    ];
    let body = csv_body(HEADER, page.holders, |out, h| {
        let id = h.client_id.to_string();
        record(
            out,
            &[
                h.client.as_str(),
                &id,
                h.site.as_str(),
                &h.name,
                &h.version,
                &h.arch,
                &h.source,
            ],
        )
    });
    download(file, "text/csv; charset=utf-8", body)
}

/// The CSV of a page of packages: a header, then one row per package and version.
pub fn packages_csv(file: &str, page: PackagePage) -> Response {
    const HEADER: &[&str] = &["name", "clients", "version", "version_clients"];
    let body = csv_body(HEADER, page.packages, |out, p| {
        let clients = p.clients.to_string();
        for v in &p.versions {
            let version_clients = v.clients.to_string();
            record(out, &[&p.name, &clients, &v.version, &version_clients])?;
        }
        Ok(())
    });
    download(file, "text/csv; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::wire::{PackageSummary, VersionCount};

    async fn text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn formulas_are_neutralised_and_the_rest_left_alone() {
        for bad in [
            "=1+2",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            r#"=HYPERLINK("http://evil.example","x")"#,
        ] {
            assert_eq!(cell(bad), format!("'{bad}"), "{bad:?}");
        }
        for good in ["bash", "1:2.0-1", "5.2.15-3", "", "a=b", "x-y"] {
            assert_eq!(cell(good), good);
        }
    }

    #[tokio::test]
    async fn a_package_export_quotes_and_neutralises_its_cells() {
        let page = PackagePage {
            total: 2,
            offset: 0,
            packages: vec![
                PackageSummary {
                    name: r#"=HYPERLINK("http://evil.example","x")"#.to_string(),
                    clients: 1,
                    versions: vec![VersionCount {
                        version: "=1+2".to_string(),
                        clients: 1,
                    }],
                },
                PackageSummary {
                    name: "a,b".to_string(),
                    clients: 2,
                    versions: vec![
                        VersionCount {
                            version: "1:2.0-1".to_string(),
                            clients: 1,
                        },
                        VersionCount {
                            version: "say \"hi\"".to_string(),
                            clients: 1,
                        },
                    ],
                },
            ],
        };
        let resp = packages_csv("packages.csv", page);
        assert_eq!(
            resp.headers()[CONTENT_DISPOSITION],
            "attachment; filename=\"packages.csv\""
        );
        assert_eq!(
            text(resp).await,
            "name,clients,version,version_clients\r\n\
             \"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",1,'=1+2,1\r\n\
             \"a,b\",2,1:2.0-1,1\r\n\
             \"a,b\",2,\"say \"\"hi\"\"\",1\r\n"
        );
    }

    #[tokio::test]
    async fn a_long_export_is_sent_in_chunks_that_join_to_every_row() {
        let packages: Vec<PackageSummary> = (0..5000)
            .map(|i| PackageSummary {
                name: format!("package-{i:05}"),
                clients: 1,
                versions: vec![VersionCount {
                    version: format!("{i}.0-1"),
                    clients: 1,
                }],
            })
            .collect();
        let body = csv_body(&["name"], packages, |out, p| record(out, &[&p.name]));
        let mut stream = body.into_data_stream();
        let mut chunks = 0;
        let mut all = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK + 1024, "{}", chunk.len());
            all.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(chunks > 2, "{chunks} chunks");
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 5002, "header, 5000 rows and the empty tail");
        assert_eq!(
            (lines[0], lines[1], lines[5000]),
            ("name", "package-00000", "package-04999")
        );
    }
}
