//! Query-protocol XML answers, written straight into a string.

/// An answer under construction: `<{Action}Response xmlns=…><{Action}Result>…`.
pub struct Xml {
    out: String,
    action: String,
    result_open: bool,
}

impl Xml {
    /// Starts an answer; `with_result` is false for actions whose answer carries no result.
    pub fn new(action: &str, namespace: &str, with_result: bool) -> Xml {
        let mut out = String::with_capacity(512);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.push_str(action);
        out.push_str("Response xmlns=\"");
        out.push_str(namespace);
        out.push_str("\">");
        if with_result {
            out.push('<');
            out.push_str(action);
            out.push_str("Result>");
        }
        Xml { out, action: action.to_owned(), result_open: with_result }
    }

    pub fn open(&mut self, tag: &str) -> &mut Xml {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Xml {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Xml {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag)
    }

    pub fn leaf_opt(&mut self, tag: &str, text: Option<&str>) -> &mut Xml {
        if let Some(text) = text {
            self.leaf(tag, text);
        }
        self
    }

    pub fn finish(mut self, request_id: &str) -> String {
        if self.result_open {
            let action = std::mem::take(&mut self.action);
            self.close(&format!("{action}Result"));
            self.action = action;
        }
        self.out.push_str("<ResponseMetadata><RequestId>");
        escape_into(&mut self.out, request_id);
        self.out.push_str("</RequestId></ResponseMetadata></");
        self.out.push_str(&self.action);
        self.out.push_str("Response>");
        self.out
    }
}

/// `<ErrorResponse>` as SQS and SNS send it.
pub fn error(namespace: &str, sender_fault: bool, code: &str, message: &str, request_id: &str) -> String {
    let mut out = String::with_capacity(256 + message.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"");
    out.push_str(namespace);
    out.push_str("\"><Error><Type>");
    out.push_str(if sender_fault { "Sender" } else { "Receiver" });
    out.push_str("</Type><Code>");
    escape_into(&mut out, code);
    out.push_str("</Code><Message>");
    escape_into(&mut out, message);
    out.push_str("</Message><Detail/></Error><RequestId>");
    escape_into(&mut out, request_id);
    out.push_str("</RequestId></ErrorResponse>");
    out
}

/// Escapes text for an element; carriage returns are kept as `&#xD;` so parsers do not fold them.
pub fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_nest_result_and_metadata() {
        let mut xml = Xml::new("GetQueueUrl", "http://queue.amazonaws.com/doc/2012-11-05/", true);
        xml.leaf("QueueUrl", "http://h/0/a&b");
        let text = xml.finish("r-1");
        assert!(text.ends_with(
            "<GetQueueUrlResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><GetQueueUrlResult><QueueUrl>http://h/0/a&amp;b</QueueUrl></GetQueueUrlResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetQueueUrlResponse>"
        ));
    }

    #[test]
    fn errors_escape_their_message() {
        let text = error("ns", true, "InvalidParameter", "a <b> \"c\"\r", "r");
        assert!(text.contains("<Type>Sender</Type><Code>InvalidParameter</Code><Message>a &lt;b&gt; &quot;c&quot;&#xD;</Message>"));
    }
}
