//! One line for an S3 error: object_store's own wording runs to several lines with the
//! request, the retries and the response body.

/// One line for `error`.
pub(super) fn describe(error: &object_store::Error) -> String {
    let text = chain_text(error);
    tracing::debug!("S3 error in full: {text}");
    let code = xml_field(&text, "Code");
    let what = match (error, code.as_deref()) {
        (_, Some("NoSuchBucket")) => "no such bucket".to_string(),
        (_, Some("AccessDenied")) | (object_store::Error::PermissionDenied { .. }, _) => {
            "access denied (the reader needs s3:ListBucket on the prefix and s3:GetObject)"
                .to_string()
        }
        (_, Some(code @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"))) => {
            format!("the credentials were rejected ({code})")
        }
        (object_store::Error::Unauthenticated { .. }, _) => {
            "the credentials were rejected".to_string()
        }
        (object_store::Error::NotFound { .. }, _) => "not found".to_string(),
        (_, Some(code)) => match xml_field(&text, "Message") {
            Some(message) => format!("{code}: {message}"),
            None => code.to_string(),
        },
        // Credentials came from instance metadata, which did not answer.
        _ if text.contains("/latest/api/token") || text.contains("/latest/meta-data/") => {
            format!(
                "no credentials: none in the environment, and instance metadata did not answer ({})",
                innermost(error)
            )
        }
        _ => innermost(error),
    };
    what.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every message in the error's chain, joined.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The deepest cause: "Connection refused", rather than the request that met it.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &dyn std::error::Error = error;
    while let Some(cause) = deepest.source() {
        deepest = cause;
    }
    deepest.to_string()
}

fn xml_field(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_fit_on_one_line() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        let error = object_store::Error::Generic {
            store: "S3",
            source: body.into(),
        };
        assert_eq!(describe(&error), "no such bucket");
        let other = object_store::Error::Generic {
            store: "S3",
            source: "<Code>SlowDown</Code>\n<Message>Please\nreduce</Message>".into(),
        };
        assert_eq!(describe(&other), "SlowDown: Please reduce");
    }
}
