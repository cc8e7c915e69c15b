//! Cluster membership, health and placement.
