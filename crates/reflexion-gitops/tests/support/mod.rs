pub mod github;
pub mod repo;
