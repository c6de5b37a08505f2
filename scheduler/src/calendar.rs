//! Calendar: cron fire times in the policy timezone, filtered by hours, days and holidays. (STUB)
