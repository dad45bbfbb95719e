"""What people read: report notebooks' presentation helpers and scheduled report runs."""
