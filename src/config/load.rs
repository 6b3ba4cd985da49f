//! Reading campaign files: a file of campaigns, one campaign (the admin
//! API's), the built-in demo; each validated.

use super::{validate::validate_campaign, *};

/// Loads and validates a campaign config file.
pub fn load_file(path: &Path) -> Result<Vec<CampaignConfig>, ConfigError> {
    Ok(configs_of(load_file_campaigns(path)?))
}

/// The built-in demo campaigns.
pub fn demo() -> Result<Vec<CampaignConfig>, ConfigError> {
    Ok(configs_of(demo_campaigns()?))
}

fn configs_of(campaigns: Vec<FileCampaign>) -> Vec<CampaignConfig> {
    campaigns.into_iter().map(|c| c.config).collect()
}

/// Parses and validates campaign config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<CampaignConfig>, ConfigError> {
    let file: CampaignsFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        message,
    };
    let mut campaigns = file.campaigns;
    if campaigns.is_empty() {
        return Err(invalid("no [[campaigns]] declared".into()));
    }
    let mut ids = HashSet::new();
    for c in &mut campaigns {
        validate_campaign(c).map_err(|m| invalid(format!("campaign '{}': {m}", c.id)))?;
        if !ids.insert(c.id.clone()) {
            return Err(invalid(format!("campaign id '{}' is declared twice", c.id)));
        }
    }
    Ok(campaigns)
}

/// A campaign as the campaign file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileCampaign {
    /// The validated config.
    pub config: CampaignConfig,
    /// A digest of the campaign's entry as the file writes it (keys and
    /// values, not comments or layout), to tell at startup whether an
    /// operator edited it since the server last read it. Taken over what
    /// the file says rather than the parsed config, so that a release that
    /// adds a field or changes a default does not look like an edit.
    pub fingerprint: String,
}

/// [`parse`], with each campaign's [`FileCampaign::fingerprint`].
pub fn parse_file(text: &str, origin: &str) -> Result<Vec<FileCampaign>, ConfigError> {
    let configs = parse(text, origin)?;
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    let entries = table
        .get("campaigns")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(configs
        .into_iter()
        .zip(entries)
        .map(|(config, entry)| FileCampaign {
            config,
            fingerprint: blake3::hash(entry.to_string().as_bytes()).to_hex()[..16].to_owned(),
        })
        .collect())
}

/// [`load_file`], with fingerprints.
pub fn load_file_campaigns(path: &Path) -> Result<Vec<FileCampaign>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_file(&text, &path.display().to_string())
}

/// [`demo`], with fingerprints.
pub fn demo_campaigns() -> Result<Vec<FileCampaign>, ConfigError> {
    parse_file(DEMO_CAMPAIGNS_TOML, "built-in demo")
}

/// Parses and validates one campaign, as sent to a running server: either
/// a file with exactly one `[[campaigns]]` entry, or the campaign's keys at
/// the top level (with `[[offers]]` and `[[features]]` tables).
pub fn parse_campaign(text: &str, origin: &str) -> Result<CampaignConfig, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    let mut campaigns = if table.contains_key("campaigns") {
        parse(text, origin)?
    } else {
        // From the text, not the table, so that errors keep their line.
        let mut c: CampaignConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        validate_campaign(&mut c).map_err(|m| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: format!("campaign '{}': {m}", c.id),
        })?;
        vec![c]
    };
    if campaigns.len() != 1 {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            message: format!(
                "declares {} campaigns; send one campaign at a time",
                campaigns.len()
            ),
        });
    }
    Ok(campaigns.remove(0))
}
