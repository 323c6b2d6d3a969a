//! CSV exports neutralise formulas (issue 15, item 6): a package named
//! `=HYPERLINK("http://evil.example","x")` with version `=1+2`, installed on a client, reaches
//! `/console/software.csv`, `/console/software/{name}/export.csv` and the admin API's
//! `format=csv` as text a spreadsheet shows, not as a formula it evaluates.

use crate::common::*;
use crate::console::Console;

const EVIL: &str = r#"=HYPERLINK("http://evil.example","x")"#;

fn get_csv(site: &Site, path: &str) -> String {
    let mut resp = http()
        .get(&format!("{}{path}", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.body_mut().read_to_string().unwrap()
}

/// Every cell of every row, parsed as a spreadsheet would split them (RFC 4180).
fn cells(csv: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, csv.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

/// No cell starts with a character that makes a spreadsheet evaluate it.
fn assert_inert(csv: &str) {
    for row in cells(csv) {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a live formula {cell:?} in:\n{csv}"
            );
        }
    }
}

#[test]
fn exports_neutralise_cells_a_spreadsheet_would_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "WEB1");
    agent.add_package(EVIL, "=1+2");
    agent.cycle();

    let api = get_csv(
        &site,
        "/api/v1/software/packages?search=hyperlink&format=csv",
    );
    assert_inert(&api);
    let rows = cells(&api);
    assert_eq!(
        rows[1],
        [
            format!("'{EVIL}"),
            "1".to_string(),
            "'=1+2".to_string(),
            "1".to_string()
        ],
        "{api}"
    );

    let name = "%3DHYPERLINK(%22http:%2F%2Fevil.example%22,%22x%22)";
    let holders = get_csv(&site, &format!("/api/v1/software?name={name}&format=csv"));
    assert_inert(&holders);
    let rows = cells(&holders);
    assert_eq!(rows.len(), 2, "{holders}");
    assert_eq!(
        (
            rows[1][0].as_str(),
            rows[1][3].as_str(),
            rows[1][4].as_str()
        ),
        ("WEB1", &*format!("'{EVIL}"), "'=1+2")
    );

    let mut console = Console::new(&site);
    console.login(&site.admin_token());
    let list = console.get("/console/software.csv?q=hyperlink");
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body, api, "the console's export is the API's");
    let one = console.get(&format!("/console/software/{name}/export.csv"));
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body, holders);
}
