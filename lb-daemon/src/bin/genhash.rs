//! `genhash`: prints the MD5 digest of a web page's body, for `HTTP_GET { url { digest } }`,
//! with keepalived 2.2.7's genhash options, output and exit codes.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use lb_daemon::genhash::{self, Protocol};

const USAGE: &str = "Usage: genhash COMMAND [OPTIONS]
Commands:
   -s server-address -p port -u url
   -S -s server-address -p port -u url
   -h

Options:
Either long or short options are allowed.
   --use-ssl         -S       Use SSL connection to remote server.
   --use-sni         -I       Use SNI during SSL handshake (uses virtualhost setting; see -V).
   --server          -s       Use the specified remote server address.
   --port            -p       Use the specified remote server port.
   --url             -u       Use the specified remote server url.
   --use-virtualhost -V       Use the specified virtualhost in GET query.
   --verbose         -v       Use verbose mode output.
   --help            -h       Display this short inlined help screen.
   --fwmark          -m       Use the specified FW mark.
   --protocol        -P       Use the specified HTTP protocol - '1.0', 1.0c', '1.1'.
                                1.0c means 1.0 with 'Connection: close'
   --timeout         -t       Timeout in seconds
";

/// Prints the usage (keepalived prints it on stderr for -h and on bad arguments) and exits 1.
fn usage() -> ExitCode {
    eprint!("{USAGE}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut server, mut port, mut url, mut vhost, mut fwmark) = (None, None, None, None, None);
    let (mut verbose, mut ssl, mut sni, mut protocol, mut timeout) =
        (false, false, false, Protocol::default(), 5u64);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "-h" | "--help" => return usage(),
            "-v" | "--verbose" => verbose = true,
            "-S" | "--use-ssl" => ssl = true,
            "-I" | "--use-sni" => sni = true,
            "-s" | "--server" => server = value(),
            "-p" | "--port" => port = value().and_then(|p| p.parse::<u16>().ok()),
            "-u" | "--url" => url = value(),
            "-V" | "--use-virtualhost" => vhost = value(),
            "-m" | "--fwmark" => {
                let text = value().unwrap_or_default();
                match parse_mark(&text) {
                    Some(mark) => fwmark = Some(mark),
                    None => {
                        eprintln!("invalid fwmark '{text}'");
                        return usage();
                    }
                }
            }
            "-P" | "--protocol" => match value().as_deref().and_then(Protocol::parse) {
                Some(p) => protocol = p,
                None => return usage(),
            },
            "-t" | "--timeout" => match value().and_then(|t| t.parse().ok()) {
                Some(t) => timeout = t,
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let (Some(server), Some(port), Some(url)) = (server, port, url) else { return usage() };
    let Ok(ip) = server.parse() else {
        eprintln!("genhash: server address {server} is not an IP address");
        return usage();
    };
    let query = genhash::Query {
        server: SocketAddr::new(ip, port),
        url: &url,
        virtualhost: vhost.as_deref(),
        protocol,
        timeout: Duration::from_secs(timeout),
        tls: ssl.then_some(sni),
        fwmark,
    };
    let output = genhash::run(&query, verbose);
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    ExitCode::SUCCESS
}

/// `-m`: a decimal mark; keepalived 2.2.7 keeps the low 32 bits of a larger number
/// (observed: `-m 99999999999` marks packets 0x4876e7ff) and refuses hex and signs.
fn parse_mark(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Truncation intended: keepalived's mark is the low 32 bits.
    text.parse::<u64>().ok().map(|m| m as u32)
}
