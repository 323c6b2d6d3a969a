//! Database URLs as messages and logs show them: with any password hidden.

/// The URL with its password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL form that can hold a password in its authority; a `password=` parameter
        // is still hidden below.
        return redact_param(url);
    };
    let rest_start = scheme_end + 3;
    let authority_end = url[rest_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| rest_start + i);
    let authority = &url[rest_start..authority_end];
    let redacted = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &authority[at..]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    redact_param(&format!(
        "{}{}{}",
        &url[..rest_start],
        redacted,
        &url[authority_end..]
    ))
}

/// Hides the value of a `password=` query parameter.
fn redact_param(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let params: Vec<String> = url[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{}?{}", &url[..q], params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://inv:s3cret@db:5432/inv"),
            "postgres://inv:***@db:5432/inv"
        );
        assert_eq!(
            redact_url("postgres://inv@db/inv?password=s3cret&sslmode=require"),
            "postgres://inv@db/inv?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/inv"), "postgres://db/inv");
        assert_eq!(
            redact_url("postgresql://u:p@ss@h/d"),
            "postgresql://u:***@h/d"
        );
    }
}
