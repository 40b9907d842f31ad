//! Where a part of the stack listens: a free port by default, or a socket the caller chose.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

/// Where a part of the stack listens.
#[derive(Debug, Default)]
pub enum Listen {
    /// A free port on 127.0.0.1, picked when the part starts.
    #[default]
    Ephemeral,
    /// This address, bound when the part starts.
    At(SocketAddr),
    /// A socket the caller bound already: its address is known, and held, before the part
    /// starts, so nothing else can take it in between.
    Bound(std::net::TcpListener),
}

impl Listen {
    /// A socket bound now on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn bind_ephemeral() -> io::Result<Listen> {
        Ok(Listen::Bound(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?))
    }

    /// The bound socket (binding it now unless it is bound already).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        match self {
            Listen::Ephemeral => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)),
            Listen::At(addr) => std::net::TcpListener::bind(addr),
            Listen::Bound(listener) => Ok(listener),
        }
    }

    /// The bound socket, handed to tokio. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the address cannot be bound or the socket not registered with the runtime.
    pub fn into_tokio(self) -> io::Result<tokio::net::TcpListener> {
        let listener = self.into_std()?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// An address for a server that binds it itself (teloxide's webhook server takes an
    /// address, not a socket): a socket picked or held here is closed first, so another
    /// process could take the port before that server binds it.
    ///
    /// # Errors
    /// When a free port cannot be found.
    pub fn into_address(self) -> io::Result<SocketAddr> {
        match self {
            Listen::At(addr) => Ok(addr),
            other => other.into_std()?.local_addr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_socket_keeps_its_address() {
        let listen = Listen::bind_ephemeral().unwrap();
        let Listen::Bound(socket) = &listen else { panic!("bound") };
        let addr = socket.local_addr().unwrap();
        assert_eq!(listen.into_tokio().unwrap().local_addr().unwrap(), addr);
    }

    #[test]
    fn an_ephemeral_listener_is_on_loopback() {
        let addr = Listen::Ephemeral.into_address().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        let fixed = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        assert_eq!(Listen::At(fixed).into_address().unwrap(), fixed);
    }
}
