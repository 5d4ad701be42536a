//! Exact evaluation metrics (spec section 3): image- and pixel-level AUROC, AP, F1max and AUPRO,
//! per class, averaged over classes, and pooled.
//!
//! [`EvalAccumulator`] collects one group's image scores, labels, pixel maps and masks and
//! computes a [`MetricSet`]; [`MetricSet::mean_of`] averages classes. The exact algorithms live
//! in [`ranking`] (AUROC / AP / F1max), [`pro`] (AUPRO) and [`threshold`] (calibration).

mod accumulator;
pub mod pro;
mod radix;
pub mod ranking;
mod sweep;
pub mod threshold;

pub use accumulator::EvalAccumulator;

/// The seven metrics of one group of test images, as fractions in [0, 1]. `None` means
/// undefined (for example a class with only good images has no image AUROC).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricSet {
    pub image_auroc: Option<f64>,
    pub image_ap: Option<f64>,
    pub image_f1max: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub pixel_ap: Option<f64>,
    pub pixel_f1max: Option<f64>,
    pub aupro: Option<f64>,
    /// ADer's mAD: the mean of the seven, when all seven are defined.
    pub mad: Option<f64>,
}

impl MetricSet {
    fn values(&self) -> [Option<f64>; 7] {
        [
            self.image_auroc,
            self.image_ap,
            self.image_f1max,
            self.pixel_auroc,
            self.pixel_ap,
            self.pixel_f1max,
            self.aupro,
        ]
    }

    /// Sets `mad` from the seven metrics (None unless all are defined).
    pub fn with_mad(mut self) -> Self {
        let v = self.values();
        self.mad = if v.iter().all(|x| x.is_some()) {
            Some(v.iter().map(|x| x.unwrap_or(0.0)).sum::<f64>() / 7.0)
        } else {
            None
        };
        self
    }

    /// The unweighted mean over `sets`, per metric, of the defined values (None if none is).
    pub fn mean_of(sets: &[MetricSet]) -> MetricSet {
        let mean = |f: &dyn Fn(&MetricSet) -> Option<f64>| {
            let v: Vec<f64> = sets.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        MetricSet {
            image_auroc: mean(&|m| m.image_auroc),
            image_ap: mean(&|m| m.image_ap),
            image_f1max: mean(&|m| m.image_f1max),
            pixel_auroc: mean(&|m| m.pixel_auroc),
            pixel_ap: mean(&|m| m.pixel_ap),
            pixel_f1max: mean(&|m| m.pixel_f1max),
            aupro: mean(&|m| m.aupro),
            mad: None,
        }
        .with_mad()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_skips_undefined_and_mad_needs_all() {
        let a = MetricSet {
            image_auroc: Some(1.0),
            pixel_auroc: Some(0.5),
            ..Default::default()
        };
        let b = MetricSet {
            image_auroc: None,
            pixel_auroc: Some(0.7),
            ..Default::default()
        };
        let m = MetricSet::mean_of(&[a, b]);
        assert_eq!(m.image_auroc, Some(1.0));
        assert!((m.pixel_auroc.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(m.mad, None);
        let full = MetricSet {
            image_auroc: Some(0.7),
            image_ap: Some(0.7),
            image_f1max: Some(0.7),
            pixel_auroc: Some(0.7),
            pixel_ap: Some(0.7),
            pixel_f1max: Some(0.7),
            aupro: Some(0.7),
            mad: None,
        }
        .with_mad();
        assert!((full.mad.unwrap() - 0.7).abs() < 1e-12);
    }
}
