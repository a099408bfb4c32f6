//! The govpaas.io/v1alpha1 API.
