//! Command-line names of the backbone's choices ([`clap::ValueEnum`]): [`Arch`] and [`Layer`]
//! by torchvision's names ([`Arch::name`], [`Layer::name`]), [`BnStats`] as `reference` /
//! `clean` (its serde names). Parsing, the `[possible values: ...]` of `--help` and the error
//! for an unknown value all come from these lists.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use super::{Arch, BnStats, Layer};

impl ValueEnum for Arch {
    fn value_variants<'a>() -> &'a [Self] {
        &Arch::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Layer {
    fn value_variants<'a>() -> &'a [Self] {
        &Layer::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for BnStats {
    fn value_variants<'a>() -> &'a [Self] {
        &[BnStats::Reference, BnStats::Clean]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            BnStats::Reference => "reference",
            BnStats::Clean => "clean",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_names_are_the_serde_names() {
        for arch in Arch::ALL {
            let name = arch.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_value(arch).unwrap(), name.as_str());
            assert_eq!(Arch::from_str(&name, false).unwrap(), arch);
        }
        for layer in Layer::ALL {
            let name = layer.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_value(layer).unwrap(), name.as_str());
        }
        for bn in BnStats::value_variants() {
            let name = bn.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_value(bn).unwrap(), name.as_str());
        }
        assert!(Arch::from_str("wideresnet50", false).is_err());
    }
}
