//! How the admin subcommands (`export`, `forget`, `backup`) reach a running
//! server: plaintext or TLS, with the bearer token on every call.

use anyhow::Context as _;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use offer_bandit::proto::campaign_admin_client::CampaignAdminClient;

use crate::cli::ClientArgs;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone)]
pub(crate) struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A `CampaignAdmin` client for `args`.
pub(crate) type Admin = CampaignAdminClient<InterceptedService<Channel, BearerToken>>;

/// Reads the token from `--auth-token-file` or `OFFER_BANDIT_AUTH_TOKEN`.
pub(crate) fn read_token(
    file: Option<&std::path::Path>,
    inline: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let token = match (file, inline) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, Some(t)) => Some(t.trim().to_owned()),
        (None, None) => None,
    };
    if let Some(t) = &token
        && t.len() < offer_bandit::MIN_TOKEN_BYTES
    {
        anyhow::bail!(
            "the bearer token must be at least {} bytes",
            offer_bandit::MIN_TOKEN_BYTES
        );
    }
    Ok(token)
}

/// Connects to the server named by `args`.
pub(crate) async fn admin(args: &ClientArgs) -> anyhow::Result<Admin> {
    let mut endpoint = Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("'{}' is not a server address", args.server))?;
    if args.server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &args.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some(d) = &args.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let token = args
        .token
        .read()?
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("the bearer token must be printable ASCII")?;
    Ok(CampaignAdminClient::with_interceptor(
        channel,
        BearerToken(token),
    ))
}
