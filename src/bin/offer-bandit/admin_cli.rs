//! The admin subcommands that change a running server's campaigns:
//! `campaign-get` and `campaign-put` read and replace a campaign's config
//! (or create a campaign), `offer-add` adds an offer, `offer-status` and
//! `campaign-status` pause, resume or retire offers and campaigns. Every
//! change is validated by the server, durable when the command returns, and
//! used from the next SelectOffer on.

use anyhow::Context as _;

use offer_bandit::proto;

use crate::{
    cli::{CampaignGetArgs, CampaignPutArgs, CampaignStatusArgs, OfferAddArgs, OfferStatusArgs},
    export::status,
};

/// One line saying which revision a campaign is at.
fn revision_line(r: &proto::CampaignConfigResponse) -> String {
    format!(
        "campaign {} is at revision {} ({}, {}){}",
        r.campaign,
        r.revision,
        r.source,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(
                    u64::try_from(r.updated_at_unix_ms).unwrap_or(0)
                )
        ),
        if r.served { "" } else { "; not served" }
    )
}

/// `offer-bandit campaign-get`: the config as TOML on standard output (its
/// revision in a comment), or the whole answer as JSON.
pub(crate) async fn campaign_get(args: CampaignGetArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .get_campaign_config(proto::GetCampaignConfigRequest {
            campaign: args.campaign,
        })
        .await
        .map_err(status)?
        .into_inner();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "campaign": r.campaign,
                "revision": r.revision,
                "source": r.source,
                "updated_at_unix_ms": r.updated_at_unix_ms,
                "served": r.served,
                "config_toml": r.config_toml,
            })
        );
    } else {
        println!("# {}\n{}", revision_line(&r), r.config_toml);
    }
    Ok(())
}

/// `offer-bandit campaign-put`: creates the campaign of a TOML file or
/// replaces its config.
pub(crate) async fn campaign_put(args: CampaignPutArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    // The same validation as the server's, before the round trip.
    offer_bandit::config::parse_campaign(&text, &args.file.display().to_string())?;
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .put_campaign(proto::PutCampaignRequest {
            config_toml: text,
            expected_revision: args.expected_revision,
        })
        .await
        .map_err(status)?
        .into_inner();
    println!("{}", revision_line(&r));
    Ok(())
}

/// `offer-bandit offer-add`.
pub(crate) async fn offer_add(args: OfferAddArgs) -> anyhow::Result<()> {
    let features = args
        .features
        .iter()
        .map(|f| offer_feature(f))
        .collect::<anyhow::Result<_>>()?;
    let display = args
        .display
        .iter()
        .map(|d| {
            d.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--display '{d}' is not NAME=TEXT"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .add_offer(proto::AddOfferRequest {
            display,
            campaign: args.campaign,
            offer_id: args.id.clone(),
            name: args.name.unwrap_or_default(),
            value: args.value,
            category: args.category.unwrap_or_default(),
            max_decisions: args.max_decisions,
            max_redemptions: args.max_redemptions,
            max_decisions_per_day: args.max_decisions_per_day,
            max_redemptions_per_day: args.max_redemptions_per_day,
            max_value: args.max_value,
            expected_revision: args.expected_revision,
            features,
        })
        .await
        .map_err(status)?
        .into_inner();
    println!("offer {} added; {}", args.id, revision_line(&r));
    Ok(())
}

/// `NAME=VALUE` of `offer-add --feature`: true/false a flag, a finite
/// number a number, anything else (or anything in double quotes) a
/// category.
fn offer_feature(arg: &str) -> anyhow::Result<(String, proto::FeatureValue)> {
    use proto::feature_value::Kind;
    let Some((name, value)) = arg.split_once('=') else {
        anyhow::bail!("--feature {arg}: expected NAME=VALUE, e.g. kind=bogo");
    };
    let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
    let kind = match value {
        v if quoted => Kind::Category(v[1..v.len() - 1].to_owned()),
        "true" => Kind::Flag(true),
        "false" => Kind::Flag(false),
        v => match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Kind::Number(x),
            _ => Kind::Category(v.to_owned()),
        },
    };
    Ok((name.to_owned(), proto::FeatureValue { kind: Some(kind) }))
}

/// `offer-bandit offer-status`.
pub(crate) async fn offer_status(args: OfferStatusArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    client
        .set_offer_status(proto::SetOfferStatusRequest {
            campaign: args.campaign.clone(),
            offer_id: args.offer.clone(),
            status: args.status.clone(),
        })
        .await
        .map_err(status)?;
    println!(
        "offer {} of campaign {} is now {}",
        args.offer, args.campaign, args.status
    );
    Ok(())
}

/// `offer-bandit campaign-status`.
pub(crate) async fn campaign_status(args: CampaignStatusArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    client
        .set_campaign_status(proto::SetCampaignStatusRequest {
            campaign: args.campaign.clone(),
            status: args.status.clone(),
        })
        .await
        .map_err(status)?;
    println!("campaign {} is now {}", args.campaign, args.status);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::feature_value::Kind;

    #[test]
    fn offer_feature_values_take_their_kind_from_their_text() {
        let kind = |arg: &str| offer_feature(arg).expect("parses").1.kind;
        assert_eq!(kind("kind=bogo"), Some(Kind::Category("bogo".into())));
        assert_eq!(kind("depth=0.5"), Some(Kind::Number(0.5)));
        assert_eq!(kind("seasonal=true"), Some(Kind::Flag(true)));
        assert_eq!(kind("tier=\"2\""), Some(Kind::Category("2".into())));
        assert_eq!(kind("depth=nan"), Some(Kind::Category("nan".into())));
        assert!(offer_feature("kind").is_err());
    }
}
