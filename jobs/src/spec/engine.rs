//! `[model.engine]` and `model.device`: where an `engine` model runs and
//! the engine's limits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an `engine` model runs: `"cpu"`, `"cuda"` (device 0) or
/// `"cuda:N"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda {
        ordinal: u32,
    },
}

impl DeviceSpec {
    pub const ACCEPTED: &'static str = "\"cpu\", \"cuda\" or \"cuda:N\" (N a device number)";
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda { ordinal: 0 } => f.write_str("cuda"),
            DeviceSpec::Cuda { ordinal } => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda { ordinal: 0 }),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|ordinal| DeviceSpec::Cuda { ordinal })
                .ok_or_else(|| {
                    format!(
                        "unknown device {other:?}, expected {}",
                        DeviceSpec::ACCEPTED
                    )
                }),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `[model.engine]`: the engine's limits, as in vLLM. Unset values take
/// the engine's defaults.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Most sequences in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<u32>,
    /// Most tokens computed in one step (longer prompts are prefilled in
    /// chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_batched_tokens: Option<u32>,
    /// Memory for the KV cache: bytes, or a string such as `"512MiB"` or
    /// `"2GB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_memory: Option<ByteSize>,
    /// Longest sequence (prompt plus generation); the model's own limit
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
    /// CPU threads (default: every core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Reuse the KV of shared prompt prefixes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_prefix_caching: Option<bool>,
}

/// A number of bytes, written as an integer or with a unit (`B`, `KB`,
/// `MB`, `GB`, `KiB`, `MiB`, `GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {s:?}: use B, KB, MB, GB, KiB, MiB or GiB"
                ))
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 536870912, \"512MiB\" or \"2GB\""))?;
        let bytes = value * scale as f64;
        if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
            return Err(format!("{s:?} is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a number of bytes or a string such as \"512MiB\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// In the OpenAPI description: a number of bytes, or a string with a unit.
impl utoipa::PartialSchema for ByteSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "Bytes, or a string such as \"512MiB\" or \"2GB\" (B, KB, MB, GB, KiB, MiB, GiB)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ByteSize {}
