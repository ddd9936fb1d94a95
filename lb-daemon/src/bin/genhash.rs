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
    let (mut server, mut port, mut url, mut vhost) = (None, None, None, None);
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
                let _ = value();
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
    let addr = SocketAddr::new(ip, port);
    print!(
        "{}",
        genhash::run(
            &addr,
            &url,
            vhost.as_deref(),
            protocol,
            verbose,
            Duration::from_secs(timeout),
            ssl.then_some(sni)
        )
    );
    ExitCode::SUCCESS
}
