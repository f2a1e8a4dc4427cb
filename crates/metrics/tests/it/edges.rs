//! Edge inputs give errors, never NaN.

use cxr_metrics::{self as m, MetricsError};

#[test]
fn empty_one_class_nonfinite_and_mismatched_inputs() {
    assert_eq!(m::roc_auc(&[], &[]), Err(MetricsError::Empty));
    assert_eq!(
        m::roc_auc(&[1, 1, 1], &[0.1, 0.5, 0.9]),
        Err(MetricsError::SingleClass { class: 1 })
    );
    assert_eq!(
        m::roc_auc(&[0, 0], &[0.1, 0.5]),
        Err(MetricsError::SingleClass { class: 0 })
    );
    assert_eq!(
        m::roc_auc(&[0, 1], &[0.1, f64::NAN]),
        Err(MetricsError::NonFinite { index: 1 })
    );
    assert_eq!(
        m::brier(&[0, 1], &[0.1, f64::INFINITY]),
        Err(MetricsError::NonFinite { index: 1 })
    );
    assert_eq!(
        m::roc_auc(&[0, 1, 1], &[0.1, 0.2]),
        Err(MetricsError::LengthMismatch {
            labels: 3,
            scores: 2
        })
    );
    assert_eq!(
        m::roc_auc(&[0, 2], &[0.1, 0.2]),
        Err(MetricsError::BadLabel { index: 1, value: 2 })
    );
    assert!(matches!(
        m::ece(&[0, 1], &[0.1, 1.2], m::Binning::default()),
        Err(MetricsError::NotAProbability { index: 1, .. })
    ));
    assert!(m::binary_report(&[1, 1], &[0.2, 0.9], 0.5).is_err());
    assert!(m::fit_temperature(&[1.0, 2.0], &[1, 1]).is_err());
    assert!(m::auc_ci_delong(&[0, 0], &[1.0, 2.0]).is_err());
    assert!(m::bootstrap_ci(&[1, 1], &[0.2, 0.9], 0.5, m::BootstrapConfig::default()).is_err());
    assert!(m::mean_std(&[]).is_err());
    assert!(m::mean_std(&[1.0, f64::NAN]).is_err());
    assert!(m::threshold_for_sensitivity(&[0, 1], &[0.2, 0.9], 1.5).is_err());
}
