//! TEMPORARY: replaced by the connection layer being written beside this (libpq conventions, TLS).

use std::str::FromStr;

use crate::store::{Cause, StoreError};

#[derive(Clone, Debug)]
pub struct Target {
    config: postgres::Config,
    text: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let config = postgres::Config::from_str(text).map_err(|e| e.to_string())?;
        Ok(Target { config, text: text.to_owned() })
    }

    pub fn describe(&self) -> String {
        self.text.clone()
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    pub fn connect(&self, purpose: &str) -> Result<postgres::Client, StoreError> {
        let mut config = self.config.clone();
        config.application_name(&format!("orders-daemon {purpose}"));
        Ok(config.connect(postgres::NoTls)?)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        if error.is_closed() || error.code().is_none() {
            return StoreError::Unavailable {
                reason: "the database cannot be reached",
                detail: error.to_string(),
                cause: None,
            };
        }
        let text = match error.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => error.to_string(),
        };
        StoreError::Failed(text, Some(Cause(error.to_string())))
    }
}
