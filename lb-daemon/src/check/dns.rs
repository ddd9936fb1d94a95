//! `DNS_CHECK`: a query of `type` (default SOA) for `name` (default `.`) over UDP; the server
//! must answer it (same id and question) with NOERROR. Messages are built and read with
//! hickory-proto.

use std::str::FromStr as _;

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};

use super::{CheckError, Endpoint, Probe};

/// A resolved DNS_CHECK.
#[derive(Debug, Clone)]
pub struct DnsProbe {
    /// Where to send the query.
    pub ep: Endpoint,
    /// The question.
    pub query: Query,
}

impl DnsProbe {
    /// `type` and `name` as written (keepalived's defaults SOA and `.`).
    pub fn new(ep: Endpoint, query_type: Option<&str>, name: Option<&str>) -> Result<Self, CheckError> {
        let rtype = RecordType::from_str(&query_type.unwrap_or("SOA").to_ascii_uppercase())
            .map_err(|e| CheckError::Unusable(format!("DNS_CHECK type: {e}")))?;
        let name = Name::from_ascii(name.unwrap_or("."))
            .map_err(|e| CheckError::Unusable(format!("DNS_CHECK name: {e}")))?;
        Ok(DnsProbe { ep, query: Query::query(name, rtype) })
    }

    /// One query.
    pub async fn probe(&self) -> Result<Probe, CheckError> {
        let id = super::random_u64() as u16;
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(self.query.clone());
        let bytes = message.to_vec().map_err(|e| CheckError::Dns(e.to_string()))?;
        let socket = super::udp::socket(&self.ep).await?;
        socket.send(&bytes).await?;
        let mut buf = vec![0; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything unreadable or for another query is ignored, as a stray datagram.
            let Ok(reply) = Message::from_vec(&buf[..n]) else { continue };
            if reply.id() != id || reply.message_type() != MessageType::Response {
                continue;
            }
            if reply.query() != Some(&self.query) {
                return Err(CheckError::Dns("the answer is for another question".into()));
            }
            return match reply.response_code() {
                ResponseCode::NoError => Ok(Probe::Up),
                code => Err(CheckError::Dns(format!("response code {code}"))),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A responder answering every query with `code`.
    async fn responder(code: ResponseCode) -> std::io::Result<std::net::SocketAddr> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        tokio::spawn(async move {
            let mut buf = vec![0; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let mut reply = query.clone();
                reply.set_message_type(MessageType::Response).set_response_code(code);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Ok(addr)
    }

    fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint { addr, bind: None, fwmark: None, device: None, timeout: Duration::from_secs(2), udp: true }
    }

    #[tokio::test]
    async fn noerror_is_up_and_servfail_down() -> Result<(), Box<dyn std::error::Error>> {
        let ok =
            DnsProbe::new(endpoint(responder(ResponseCode::NoError).await?), Some("a"), Some("x.example."))?;
        assert_eq!(ok.query.query_type(), RecordType::A);
        assert!(matches!(ok.probe().await, Ok(Probe::Up)));
        let bad = DnsProbe::new(endpoint(responder(ResponseCode::ServFail).await?), None, None)?;
        assert!(matches!(bad.probe().await, Err(CheckError::Dns(_))));
        assert!(
            DnsProbe::new(endpoint(responder(ResponseCode::NoError).await?), Some("NOPE"), None).is_err()
        );
        Ok(())
    }
}
