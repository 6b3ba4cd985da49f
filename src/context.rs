//! The customer context of a visit: named feature values, independent of any
//! wire format.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One feature value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureValue {
    /// A finite number.
    Number(f64),
    /// A category label.
    Category(String),
    /// A yes/no value.
    Flag(bool),
}

/// Feature name -> value.
pub type Context = HashMap<String, FeatureValue>;
