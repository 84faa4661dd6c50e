//! Opens the sockets the HTTP server accepts on: each `--web.listen-address` resolved and bound,
//! or the sockets systemd passes under socket activation. Serving them is `server`'s job.

use std::net::SocketAddr;

use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot resolve {host} (--web.listen-address)")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} (--web.listen-address) resolves to no address")]
    NoAddress { host: String },
    #[error("cannot listen on {addr} (--web.listen-address, METRICS_PORT)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--web.systemd-socket: {0}")]
    Systemd(String),
}

// Display leaves the cause to the error's source, which the binary prints after it.

/// Binds each (host, port). A name is resolved as Go's listeners do it, to its first IPv4
/// address if it has one (`localhost` is 127.0.0.1), else its first address.
pub async fn bind(targets: &[(String, u16)]) -> Result<Vec<TcpListener>, ListenError> {
    let mut listeners = Vec::with_capacity(targets.len());
    for (host, port) in targets {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|source| ListenError::Resolve {
                host: host.clone(),
                source,
            })?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| ListenError::NoAddress { host: host.clone() })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The TCP sockets systemd passed (LISTEN_PID, LISTEN_FDS), from a `.socket` unit.
pub fn from_systemd() -> Result<Vec<TcpListener>, ListenError> {
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() == 0 {
        return Err(ListenError::Systemd(
            "no socket was passed (LISTEN_FDS is unset or not for this process); start the exporter from its .socket unit".into(),
        ));
    }
    let mut listeners = Vec::with_capacity(passed.len());
    for index in 0..passed.len() {
        let socket = passed
            .take_tcp_listener(index)
            .map_err(|e| ListenError::Systemd(format!("socket {index}: {e}")))?
            .ok_or_else(|| ListenError::Systemd(format!("socket {index} is not a TCP socket")))?;
        socket
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(socket))
            .map(|listener| listeners.push(listener))
            .map_err(|e| ListenError::Systemd(format!("socket {index}: {e}")))?;
    }
    Ok(listeners)
}
