//! govpaas operator library: controllers, certificates, LGSP wiring.
