//! [`PixelBudget`]: the decoded pixels `cras serve` holds at once, across all requests.
//!
//! A request reserves the pixels of all its images (read from their headers) before any is
//! decoded and keeps the reservation until it is answered. A request above the whole budget is
//! refused with 413; one that does not fit beside the requests in flight gets 503 with
//! `Retry-After`. So memory for decoded images stays below the budget (times the few bytes a
//! decoder needs per pixel) whatever the clients send, and never aborts the process.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::api_error::ApiError;

/// Pixels per semaphore permit (permits are counted in u32 per reservation).
const UNIT: u64 = 1024;

/// The in-flight pixel budget.
pub struct PixelBudget {
    permits: Arc<Semaphore>,
    pixels: u64,
}

/// Pixels reserved by one request, released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PixelBudget {
    /// A budget of `pixels` decoded pixels in flight.
    pub fn new(pixels: u64) -> Self {
        let units = usize::try_from(pixels.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
            pixels,
        }
    }

    /// Reserves `pixels` now, or refuses: 413 above the whole budget, 503 when the requests
    /// in flight hold too much of it.
    pub fn reserve(&self, pixels: u64) -> Result<Reservation, ApiError> {
        if pixels > self.pixels {
            return Err(ApiError::too_large(format!(
                "the request's images total {pixels} pixels, above the server's budget of {} \
                 decoded pixels in flight; send fewer or smaller images per request",
                self.pixels
            )));
        }
        let units = u32::try_from(pixels.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return Ok(Reservation { _permit: None });
        }
        match self.permits.clone().try_acquire_many_owned(units) {
            Ok(permit) => Ok(Reservation {
                _permit: Some(permit),
            }),
            Err(TryAcquireError::NoPermits) | Err(TryAcquireError::Closed) => {
                let mut e = ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the server holds too many decoded pixels in flight to take {pixels} \
                         more now (budget {}); retry shortly",
                        self.pixels
                    ),
                );
                e.retry_after_s = Some(1);
                Err(e)
            }
        }
    }

    /// Pixels reserved now.
    pub fn in_use(&self) -> u64 {
        let free = self.permits.available_permits() as u64 * UNIT;
        self.pixels.saturating_sub(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_released_on_drop() {
        let budget = PixelBudget::new(10 * UNIT);
        assert_eq!(budget.reserve(11 * UNIT).unwrap_err().status.as_u16(), 413);
        let a = budget.reserve(6 * UNIT).unwrap();
        let busy = budget.reserve(6 * UNIT).unwrap_err();
        assert_eq!(busy.status.as_u16(), 503);
        assert_eq!(busy.retry_after_s, Some(1));
        assert_eq!(budget.in_use(), 6 * UNIT);
        drop(a);
        assert!(budget.reserve(6 * UNIT).is_ok());
        assert!(budget.reserve(0).is_ok());
    }
}
